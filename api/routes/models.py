"""Zero-shot classification against labels typed now, and captions (when a captioner is plugged in)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from api.deps import ServicesDep, SettingsDep
from api.errors import NotFound, responses
from api.schemas import CaptionOut, ClassifyOut, LabelScore
from api.uploads import saved_upload
from search.query import QueryError
from search.zeroshot import Prediction, classify_library, parse_labels

router = APIRouter(prefix="/api", tags=["models"])

# Each label costs a few prompt embeddings; a page's label list is short.
MAX_LABELS = 100


@router.post("/classify", response_model=ClassifyOut, responses=responses(404, 413, 415))
async def classify(
    services: ServicesDep,
    settings: SettingsDep,
    labels: Annotated[str, Form(min_length=1, max_length=10_000, description='comma-separated: "dog, cat, rain"')],
    file: Annotated[UploadFile | None, File(description="a recording to classify")] = None,
    file_id: Annotated[int | None, Form(ge=1, le=2**53, description="or: an indexed file")] = None,
    multi_label: Annotated[bool, Form(description="score each label on its own")] = False,
) -> ClassifyOut:
    """Classify an upload or an indexed file (from its stored vectors) against any labels."""
    names = parse_labels(labels)
    if len(names) > MAX_LABELS:
        raise QueryError(f"too many labels ({len(names)}; at most {MAX_LABELS} per request)")
    if (file is None) == (file_id is None):
        raise QueryError("send either an audio file (field `file`) or an indexed file id (field `file_id`)")

    def work() -> ClassifyOut:
        classifier = services.classifier(names, multi_label)
        prediction: Prediction
        if file_id is not None:
            record = services.playable(file_id)
            results = classify_library(services.catalog, classifier, [file_id])
            if not results:
                raise NotFound(f"file {file_id} has no stored vectors to classify")
            prediction, source = results[0][1], record.path.name
        else:
            assert file is not None
            with saved_upload(file, settings.max_upload_bytes, settings.max_upload_seconds) as path:
                (prediction,) = classifier.predict_files([path])
            source = file.filename or "upload"
        return ClassifyOut(
            source=source,
            file_id=file_id,
            multi_label=multi_label,
            labels=[LabelScore(label=label, score=round(score, 6)) for label, score in prediction.scores],
        )

    return await services.run(work)


@router.post("/caption", response_model=CaptionOut, responses=responses(413, 415, 503))
async def caption(
    services: ServicesDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="a recording to describe")],
) -> CaptionOut:
    captioner = services.require_captioner()  # 503 until a captioning model is configured

    def work() -> CaptionOut:
        with saved_upload(file, settings.max_upload_bytes, settings.max_upload_seconds) as path, services.encoder.lock:
            # The captioner may share the audio encoder's model: one model call at a time, as for search.
            return CaptionOut(caption=captioner.caption(path))

    return await services.run(work)
