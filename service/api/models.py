"""GET /v1/models: the one model served (any model name in a request is accepted)."""

from fastapi import APIRouter

from service.api.dependencies import ServingDep
from service.api.schemas import ModelCard, ModelList

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList)
async def list_models(serving: ServingDep) -> ModelList:
    created = int(serving.settings.model.stat().st_mtime)
    return ModelList(data=[ModelCard(id=serving.model_id, created=created)])
