"""POST /infill: llama.cpp's fill-in-the-middle endpoint."""

from fastapi import APIRouter, Depends, Request

from service.api.dependencies import CallerDep, ServingDep
from service.api.dialects import llama_cpp
from service.api.lifecycle import admit
from service.api.schemas import InfillRequest, InfillResponse
from service.api.streaming import STREAMED_200, sse_response
from service.completion.errors import NoOutput
from service.completion.runner import Delta

router = APIRouter(tags=["completions"], dependencies=[Depends(admit)])


@router.post("/infill", response_model=InfillResponse, responses={200: STREAMED_200})
async def infill(body: InfillRequest, request: Request, serving: ServingDep, caller: CallerDep):
    job = llama_cpp.job(body, serving, caller)
    timeout = llama_cpp.timeout_s(body, serving)
    if not body.stream:
        try:
            (completion,), request.state.cache = await serving.runner.complete(
                [job], timeout, caller.disconnected, caller.sensitive_file
            )
        except NoOutput:
            if not llama_cpp.client_deadline(body, serving):
                raise
            completion = llama_cpp.out_of_time(job, timeout)
        return llama_cpp.response(completion, serving)
    streams = serving.runner.start([job])

    async def chunks():
        try:
            async for delta in serving.runner.stream([job], streams, timeout):
                yield llama_cpp.chunk(delta)
        except NoOutput:
            if not llama_cpp.client_deadline(body, serving):
                raise
            yield llama_cpp.chunk(Delta(0, "", "length"))

    return sse_response(chunks(), done_marker=False)
