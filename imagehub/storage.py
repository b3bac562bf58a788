"""The storage that generated images go to: STORAGES["images"] (local files or S3)."""

from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.utils.functional import LazyObject, empty


class _ImagesStorage(LazyObject):
    """Resolved on first use, so settings (and tests overriding them) decide the backend."""

    def _setup(self):
        self._wrapped = storages["images"]


images = _ImagesStorage()


def images_storage():
    """Callable for FileField(storage=...), kept stable for migrations."""
    return images


def _reset(*, setting, **kwargs):
    if setting == "STORAGES":
        images._wrapped = empty


setting_changed.connect(_reset)
