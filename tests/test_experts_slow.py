"""Long checks of the shipped MPC experts against the quality bar (run with -m slow)."""

import pytest

from genrl_core.data.experts import expert_episode_return

BAR = {"walker_stand": 900, "walker_walk": 850, "walker_run": 550, "cheetah_run": 550}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(BAR))
def test_expert_meets_the_quality_bar(task):
    # one unseen seed per task; the 5-episode means are in checkpoints/experts/<task>.json
    ret, _ = expert_episode_return(task, seed=2024)
    assert ret >= BAR[task]
