"""What finishing a run means for each kind (``ExplainRun.kind``).

The run engine (``labeling.explain``: chunks, flow control, resend, recording) is the same for
every kind; what a finished run concludes is not. Attribution writes its conclusions item by item
as chunks arrive, so nothing is left for its end. The others conclude here, once the last chunk
is recorded (``labeling.explain.record.maybe_finish_run``, under the run row's lock):

- probe: the summary (leakage, inversion, dead clauses, steerability), then the request to the
  LLM backend for carve-outs and a rewording (``labeling.probes``);
- carveout: each signed-off carve-out's label after, and the parent probe's summary again;
- whatif: the before -> after table (``labeling.whatif``);
- regression: the clause that decides each changed gold verdict (``labeling.release``).
"""

from __future__ import annotations

from labeling.models import ExplainRun, RunKind
from labeling.probes import llm
from labeling.probes.record import finish_carveouts, summarize_probe
from labeling.release.regression_run import finish_regression
from labeling.whatif.record import finish_whatif


def finish_run(run_id: int, kind: str) -> None:
    """Write a finished run's conclusions (attribution has none left to write)."""
    if kind == RunKind.PROBE:
        summarize_probe(run_id)
        # Carve-outs and the rewording, when an LLM backend is configured (sent after commit;
        # a run already asked, or finished without results, is left alone). Without one the
        # run (its variant texts and the summary just written) is not read again.
        if llm.llm_available():
            llm.request_probe_llm(ExplainRun.objects.select_related("version").get(pk=run_id))
    elif kind == RunKind.CARVEOUT:
        finish_carveouts(run_id)
    elif kind == RunKind.WHATIF:
        finish_whatif(run_id)
    elif kind == RunKind.REGRESSION:
        finish_regression(run_id)
