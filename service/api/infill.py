"""POST /infill: llama.cpp's fill-in-the-middle endpoint."""

from fastapi import APIRouter, Depends, Request

from service.api.dependencies import CallerDep, ServingDep
from service.api.dialects import llama_cpp
from service.api.lifecycle import admit
from service.api.schemas import InfillRequest, InfillResponse
from service.api.streaming import STREAMED_200, sse_response

router = APIRouter(tags=["completions"], dependencies=[Depends(admit)])


@router.post("/infill", response_model=InfillResponse, responses={200: STREAMED_200})
async def infill(body: InfillRequest, request: Request, serving: ServingDep, caller: CallerDep):
    job = llama_cpp.job(body, serving, caller)
    timeout = llama_cpp.timeout_s(body, serving)
    if not body.stream:
        (completion,) = await serving.runner.complete(request, [job], timeout)
        return llama_cpp.response(completion, serving)
    streams = serving.runner.start([job])

    async def chunks():
        async for delta in serving.runner.stream([job], streams, timeout):
            yield llama_cpp.chunk(delta)

    return sse_response(chunks(), done_marker=False)
