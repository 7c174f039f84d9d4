"""Framework-free serving: the dynamic batcher, cloud preparation (validation, normalisation, resampling, the
family's preprocessor), batching by the family's collate policy, and answers. No FastAPI, pydantic-settings or
prometheus here: the FastAPI app (``pointserve.service``) and any other host build on it."""
