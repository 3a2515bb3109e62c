"""Shared fixtures: small real datasets collected once per test session."""

import os

import pytest

from genrl_core.data.collect import collect
from genrl_core.train.connector import train_connector
from genrl_core.train.vlm import train_vlm
from genrl_core.train.world_model import train_world_model
from genrl_core.vlm import embed_dataset, load_vlm

QUIET = {"progress": False, "log": lambda *_: None}
# read by the tests themselves, not by the app
TEST_SETTINGS = ("GENRL_UI_SCREENSHOT", "GENRL_UPDATE_SNAPSHOTS")


@pytest.fixture(scope="session", autouse=True)
def no_genrl_settings_from_the_environment():
    """`create_app` reads GENRL_* env vars (the Docker image's way of configuring it): a token,
    bundle or preset exported in the shell running the tests would silently change what they
    test. Every test sees only the settings it passes; the variables come back afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("GENRL_") and name not in TEST_SETTINGS:
                mp.delenv(name)
        yield


@pytest.fixture(scope="session")
def walker_random_data(tmp_path_factory):
    """Three real random-policy walker episodes (501 frames each)."""
    out = tmp_path_factory.mktemp("walker_random")
    collect("walker", "random", 3, out, seed=0, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, walker_random_data):
    """A complete tiny bundle (world model, VLM, connector, aligner) trained for a few steps on real data."""
    bundle = tmp_path_factory.mktemp("bundle")
    train_world_model(walker_random_data, bundle, preset="tiny", overrides=["train.steps=20"], **QUIET)
    train_vlm(walker_random_data, bundle, preset="tiny", overrides=["train.steps=3"], **QUIET)
    embed_dataset(walker_random_data, load_vlm(bundle), log=lambda *_: None)
    train_connector(walker_random_data, bundle, preset="tiny",
                    overrides=["train.steps=40", "train.log_every=10", "train.lr=1e-3"], **QUIET)
    return bundle


@pytest.fixture(scope="session")
def tiny_cheetah_bundle(tmp_path_factory, tiny_bundle):
    """A second body's tiny bundle, from two real random cheetah episodes, its world model and VLM
    started from the tiny walker's (`--init-from`), as a new body's are: for serving two bodies."""
    data = tmp_path_factory.mktemp("cheetah_random")
    collect("cheetah", "random", 2, data, seed=0, log=lambda *_: None)
    bundle = tmp_path_factory.mktemp("cheetah_bundle")
    train_world_model(data, bundle, preset="tiny", overrides=["train.steps=5"], body="cheetah", init_from=tiny_bundle,
                      **QUIET)
    train_vlm(data, bundle, preset="tiny", overrides=["train.steps=2"], init_from=tiny_bundle, **QUIET)
    embed_dataset(data, load_vlm(bundle), log=lambda *_: None)
    train_connector(data, bundle, preset="tiny", overrides=["train.steps=10", "train.log_every=5"], **QUIET)
    return bundle


@pytest.fixture(scope="session")
def generalist_bundle(tmp_path_factory, tiny_bundle):
    """A copy of the tiny bundle with a tiny trained generalist (zero-shot use: GenRL.act, /act)."""
    import shutil

    from genrl_core.agent import GenRL
    from genrl_core.generalist import GeneralistPlan, train_generalist

    bundle = tmp_path_factory.mktemp("generalist") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    train_generalist(GenRL.load(bundle), {"updates": 4, "batch": 8, "hidden": 32, "layers": 1},
                     GeneralistPlan(prompts=10, windows=0, random=4), log=lambda *_: None)
    return bundle
