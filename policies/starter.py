"""The text a new policy starts from: CoPE's four sections and one label to copy."""

STARTER_POLICY = """# Policy name

## Overview
One or two sentences: what this policy finds, and what it leaves alone.

## Definition of Terms
- **Term**: what the word means everywhere it is written in bold below.

## Interpretation of Language
- How to read quotes, sarcasm, slang, misspellings and context in the content.

## Definition of Labels

### (CODE1) Label name
#### Includes
- Content that says or shows something that involves a **Term**.
#### Excludes
- Content that only reports on, condemns or discusses it.
"""
