"""Fixtures of the e2e tier: images the image-service tests add to the session registry."""

from __future__ import annotations

import image_e2e
import pytest
import registry_env


@pytest.fixture(scope="session")
def extra_images(
    registry: registry_env.RegistryServer,
    images: registry_env.TestImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> image_e2e.ExtraImages:
    """Whiteout and user-name images, plus the layout and skopeo to push more."""
    return image_e2e.build_extra_images(tmp_path_factory.mktemp("extra-images"), registry)
