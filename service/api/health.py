"""GET|POST /v1/health in Tabby's shape, and GET /v1beta/server_setting.

`version.git_describe` names the Tabby API level this server speaks (0.9.0), which is what
`tabby-agent` checks before it asks for /v1beta/server_setting; our own version follows it.
"""

import functools
import os
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

from fastapi import APIRouter, Depends

from service.api.dependencies import ServingDep
from service.api.lifecycle import Lifecycle, get_lifecycle
from service.api.schemas import HealthState, Version

router = APIRouter(tags=["health"])

TABBY_API_LEVEL = "0.9.0"
STARTED = datetime.now(UTC)


def package_version() -> str:
    try:
        return version("completion-service")
    except PackageNotFoundError:
        return "unknown"


@functools.cache
def cpu_info() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def cuda_devices() -> list[str]:
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


@router.api_route(
    "/v1/health",
    methods=["GET", "POST"],
    response_model=HealthState,
    responses={503: {"description": "not ready: shutting down, or the engine failed"}},
)
async def health(
    serving: ServingDep, lifecycle: Annotated[Lifecycle, Depends(get_lifecycle)]
) -> HealthState:
    """Readiness: 200 while this server takes completions, 503 from the moment it drains
    (SIGTERM) or its engine has died."""
    if (refusal := lifecycle.refusal()) is not None:
        raise refusal
    return HealthState(
        model=serving.model_id,
        device=serving.device,
        arch=platform.machine(),
        cpu_info=cpu_info(),
        cpu_count=os.cpu_count() or 1,
        cuda_devices=cuda_devices(),
        version=Version(
            build_date=STARTED.date().isoformat(),
            build_timestamp=STARTED.isoformat(),
            git_sha="",
            git_describe=f"v{TABBY_API_LEVEL}-completion-service-{package_version()}",
        ),
    )


@router.get("/v1beta/server_setting")
async def server_setting() -> dict:
    # A self-hosted server: the editor clients should not send usage telemetry anywhere.
    return {"disable_client_side_telemetry": True}
