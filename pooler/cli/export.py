"""`pooler export slurm|kueue`: a recorded run as scheduler configuration."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pooler.cli.output import message


def _emit(text: str, output: Optional[Path]) -> None:
    from pooler.services.export import write_text

    if output is None:
        print(text, end="")
        return
    write_text(output, text)
    message(f"Wrote {output}")


def register(app: typer.Typer) -> None:
    """Add the `export` commands to the root app."""
    from pooler.cli.main import context

    export_app = typer.Typer(
        help="Turn a recorded allocation run into scheduler configuration (Slurm, Kueue).\n\n"
             "Example: pooler export slurm --period 2026-11 -o accounts.sh",
        no_args_is_help=True,
    )
    app.add_typer(export_app, name="export")

    @export_app.command("slurm")
    def slurm_cmd(
        ctx: typer.Context,
        period: str = typer.Option(..., "--period", help="The recorded period, e.g. 2026-11."),
        gres_type: List[str] = typer.Option(
            [], "--gres-type", metavar="ACCEL=TYPE",
            help="The gres.conf Type of an accelerator type (of the run, or of an earlier run) when it is "
                 "not the accelerator id itself (e.g. ascend-910b=ascend910b); repeatable.",
        ),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE, not stdout."),
    ) -> None:
        """Write an idempotent sacctmgr script: an account per member (Fairshare from its entitlement,
        the share before usage history) and a sub-account per project under its lead sponsor
        (GrpTRESMins from its grants, for every accelerator type). Retired projects' limits go to 0,
        retired members get Fairshare 0 and limits 0, and every account's limits of the types of
        earlier runs that this run no longer has go to 0.

        Run it again at will: existing accounts are kept and their settings set again. GPU types are
        written as the accelerator ids; an id that cannot be a GRES type name needs --gres-type.

        Example: pooler export slurm --period 2026-11 --gres-type ascend-910b=ascend910b -o accounts.sh
        """
        from pooler.services import export

        _emit(export.slurm(context(ctx), period, export.parse_gres_types(gres_type)), output)

    @export_app.command("kueue")
    def kueue_cmd(
        ctx: typer.Context,
        period: str = typer.Option(..., "--period", help="The recorded period, e.g. 2026-11."),
        resource: List[str] = typer.Option(
            [], "--resource", metavar="TYPE=RESOURCE",
            help="The Kubernetes resource of an accelerator type (default nvidia.com/gpu); repeatable, "
                 "once per type.",
        ),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to FILE, not stdout."),
    ) -> None:
        """Write Kueue v1beta2 YAML: a ResourceFlavor per accelerator type, a Cohort for the consortium
        and one per member (fair-sharing weight = entitlement, the share before usage history), a
        ClusterQueue per project with its granted devices as nominal quota (rounded per flavor so that
        no flavor's quotas exceed its devices). Members and projects retired since an earlier run are
        listed turned off: cohort weight 0, queue held with no quota.

        Example: pooler export kueue --period 2026-11 --resource ascend-910b=huawei.com/Ascend910 -o kueue.yaml
        """
        from pooler.services import export

        _emit(export.kueue(context(ctx), period, export.parse_resources(resource)), output)
