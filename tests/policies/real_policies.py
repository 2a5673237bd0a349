"""Policies written the way Zentropi publishes them (our own texts, in that shape).

A ``# Criteria`` title, ``## Overview``, ``## Definition of Terms``, ``## Interpretation of
Language`` and ``## Definition of Label`` (singular: one label), the label as
``### (CODE) Name`` with ``#### Includes`` / ``#### Excludes``; 30+ criteria.
"""

from __future__ import annotations

_INCLUDES = [
    "Offers to sell a **Regulated Item** for money, goods or services.",
    "Requests to buy a **Regulated Item** from another person.",
    "Prices, price lists or discounts attached to a **Regulated Item**.",
    "Instructions on how to pay the seller of a **Regulated Item**.",
    "Contact details given so that a **Regulated Item** can be bought.",
    "Links or handles that lead to a shop selling a **Regulated Item**.",
    "Statements that a **Regulated Item** is in stock or available now.",
    "Offers to ship or deliver a **Regulated Item** to a buyer.",
    "Offers to trade one **Regulated Item** for another.",
    "Bulk or wholesale offers of a **Regulated Item**.",
    "Auctions or raffles whose prize is a **Regulated Item**.",
    "Giveaways of a **Regulated Item** in exchange for a follow or a share.",
    "Coded words for a **Regulated Item** used together with a price.",
    "Photos or descriptions of a **Regulated Item** labelled as for sale.",
    "Offers to sell a prescription for a **Regulated Item** without a doctor.",
    "Offers to sell forged documents needed to buy a **Regulated Item**.",
    "Recruitment of couriers who deliver a **Regulated Item**.",
    "Testimonials from buyers about a seller of a **Regulated Item**.",
    "Requests for a seller of a **Regulated Item** in a named place.",
    "Offers to sell a **Regulated Item** to a **Minor**.",
    "Menus of several **Regulated Items** with quantities.",
    "Discount codes for a shop that sells a **Regulated Item**.",
    "Announcements of a new batch of a **Regulated Item** for buyers.",
    "Offers of free samples of a **Regulated Item** to future buyers.",
]
_EXCLUDES = [
    "News reporting about the sale of a **Regulated Item**.",
    "Discussion of laws or policy about a **Regulated Item**.",
    "Personal stories of using a **Regulated Item** with no offer to sell.",
    "Harm-reduction advice that offers nothing for sale.",
    "Sale of legal products that share a name with a **Regulated Item**.",
    "Fiction or song lyrics that mention a **Regulated Item**.",
    "Questions about the effects of a **Regulated Item**.",
    "Warnings about scams involving a **Regulated Item**.",
]

_TWIN_INCLUDES = [
    "Proposals to trade a **Regulated Item** for cash, goods or services.",
    "Asking another person to supply a **Regulated Item** for purchase.",
    "Prices, price lists or reductions given for a **Regulated Item**.",
    "Directions for paying whoever sells a **Regulated Item**.",
    "A phone number, e-mail or address shared so a **Regulated Item** can be bought.",
    "Links or usernames pointing to a store that sells a **Regulated Item**.",
    "Claims that a **Regulated Item** can be had right away.",
    "Proposals to post or bring a **Regulated Item** to a purchaser.",
    "Proposals to swap one **Regulated Item** for a different one.",
    "Large-quantity or trade offers of a **Regulated Item**.",
    "Auctions or lotteries that award a **Regulated Item**.",
    "Handing out a **Regulated Item** in return for follows or shares.",
    "Slang names for a **Regulated Item** paired with a price.",
    "Images or write-ups of a **Regulated Item** marked as available to buy.",
    "Selling a prescription for a **Regulated Item** with no doctor involved.",
    "Selling fake papers that are needed to purchase a **Regulated Item**.",
    "Hiring people to carry a **Regulated Item** to buyers.",
    "Reviews by purchasers of someone who sells a **Regulated Item**.",
    "Asking for a supplier of a **Regulated Item** in a given location.",
    "Proposals to sell a **Regulated Item** to a **Minor**.",
    "Lists of several **Regulated Items** with amounts.",
    "Promo codes for a store that sells a **Regulated Item**.",
    "Notices that fresh stock of a **Regulated Item** is ready for buyers.",
    "Free trial amounts of a **Regulated Item** for people who may buy later.",
]
_TWIN_EXCLUDES = [
    "Journalism about selling a **Regulated Item**.",
    "Debate about the law or rules on a **Regulated Item**.",
    "First-hand accounts of taking a **Regulated Item** that offer nothing for sale.",
    "Safer-use guidance that sells nothing.",
    "Trade in lawful goods whose name matches a **Regulated Item**.",
    "Stories or lyrics in which a **Regulated Item** appears.",
    "Questions about what a **Regulated Item** does.",
    "Alerts about frauds that involve a **Regulated Item**.",
]


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


SINGLE_LABEL_POLICY = f"""# Criteria

## Overview

This policy finds content that offers to buy, sell or trade regulated goods (drugs, weapons and
similar items) between people.

## Definition of Terms

- **Regulated Item**: a drug, weapon, explosive or other good whose sale is restricted by law.
- **Minor**: a person under eighteen years of age.

## Interpretation of Language

- Read slang and coded words for a **Regulated Item** by their common meaning.
- An offer counts even if no price is given.

## Definition of Label

### (RG) Regulated Goods Trade

#### Includes

{_bullets(_INCLUDES)}

#### Excludes

{_bullets(_EXCLUDES)}
"""

SINGLE_LABEL_TWIN = f"""# Criteria

## Overview

The policy identifies material proposing the purchase, sale or exchange of restricted goods
(drugs, weapons and the like) between individuals.

## Definition of Terms

- **Regulated Item**: any drug, weapon, explosive or other product whose sale the law restricts.
- **Minor**: someone younger than eighteen.

## Interpretation of Language

- Take slang and code names for a **Regulated Item** in their usual sense.
- A proposal counts even when it names no price.

## Definition of Label

### (RG) Regulated Goods Trade

#### Includes

{_bullets(_TWIN_INCLUDES)}

#### Excludes

{_bullets(_TWIN_EXCLUDES)}
"""

CRITERIA_COUNT = len(_INCLUDES) + len(_EXCLUDES)
