"""The console's first page: the list and the register of requests at a glance, with charts
drawn on the server."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_babel import format_date
from flask_babel import gettext as _

from .. import clock, jobs, metrics, rights, stats
from . import charts
from .site import bp, frame, page, runtime
from .suppressions import reason_labels

DAYS = 90
SOURCES_SHOWN = 6


@bp.get("/")
def dashboard() -> Any:
    now = clock.utcnow()
    with runtime().db.begin(write=False) as db:
        daily = stats.opt_outs_per_day(db, now=now, days=DAYS, zone=frame().zone)
        stored = stats.suppressions_by_reason(db)
        runs = stats.reconcile_runs(db)
        health = jobs.reconcile_health(db, now)
        verified = jobs.last_success(db, "verify-audit")
        verify = jobs.describe(verified, now) if verified is not None else None
        requests = rights.counts(db, rights.today(runtime().config.settings.compliance.zone, now))
    verdicts = metrics.verdict_totals(current_app.extensions["suppress.metrics"])
    days = [format_date(day, "d MMM") for day in daily.days]
    names = reason_labels()
    reasons = [
        charts.Series(names.get(reason, reason), values, colour)
        for (reason, values), colour in zip(
            sorted(daily.by_reason.items()), charts.PALETTE * 2, strict=False
        )
    ]
    sources = [
        charts.Series(source, values, colour)
        for (source, values), colour in zip(
            stats.top(daily.by_source, SOURCES_SHOWN, _("other")).items(),
            charts.PALETTE,
            strict=False,
        )
    ]
    gate = [
        (_("Checks: allowed"), verdicts["checks"]["allowed"], charts.PALETTE[2]),
        (_("Checks: suppressed"), verdicts["checks"]["suppressed"], charts.PALETTE[1]),
        (_("Filtered: allowed"), verdicts["filtered"]["allowed"], charts.PALETTE[2]),
        (_("Filtered: suppressed"), verdicts["filtered"]["suppressed"], charts.PALETTE[1]),
    ]
    drift = [
        charts.Series(
            _("Added from the mailing tools"), [r.added for r in runs], charts.PALETTE[0]
        ),
        charts.Series(_("Still in a CRM segment"), [r.to_remove for r in runs], charts.PALETTE[1]),
    ]
    run_days = [r.started_at[:10] for r in runs]
    return page(
        "dashboard.html",
        daily=daily,
        days=days,
        stored=stored,
        total=sum(stored.values()),
        runs=runs,
        health=health,
        verify=verify,
        requests=requests,
        verdicts=verdicts,
        reasons=reasons,
        sources=sources,
        drift=drift,
        by_reason_chart=charts.stacked_bars(
            "by-reason",
            _("Opt-outs per day by reason, last %(n)d days", n=DAYS),
            _("%(total)d opt-outs in all; the table below has every number.", total=daily.total),
            days,
            reasons,
        ),
        by_source_chart=charts.stacked_bars(
            "by-source",
            _("Opt-outs per day by source, last %(n)d days", n=DAYS),
            _("%(total)d opt-outs in all; the table below has every number.", total=daily.total),
            days,
            sources,
        ),
        gate_chart=charts.horizontal_bars(
            "gate",
            _("Gate verdicts since the servers started"),
            _("How many checks and filtered addresses were allowed and suppressed."),
            gate,
        ),
        drift_chart=charts.stacked_bars(
            "drift",
            _("Reconcile runs: what the mailing tools and the CRM held that the list did not"),
            _("One column per run, oldest first; the table below has every number."),
            run_days,
            drift,
            label_every=max(len(runs) // 6, 1),
        ),
        swatch=charts.swatch,
    )
