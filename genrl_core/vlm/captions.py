"""Captions for 8-frame windows, generated from the simulator state (VLM training only).

They stand in for the internet-scale captions a real VLM was trained on: each window's
physics features (torso height, uprightness, which side faces up, forward speed, spin,
foot heights, stillness) are turned into concept labels, and each concept has many
wordings, so that paraphrases a user might type land near the right videos. Nothing
downstream of the VLM (connector, aligner, behaviour learning) ever sees these captions.
"""

from __future__ import annotations

import numpy as np

# concept -> wordings; "{b}" is replaced by a name for the body
WORDINGS: dict[str, list[str]] = {
    "standing": ["{b} standing upright", "{b} stands up straight", "standing tall", "{b} standing still on its feet",
                 "upright posture", "stand up", "{b} balancing on both legs"],
    "crouching": ["{b} crouching", "{b} squatting low", "bent knees, body low", "{b} in a crouch"],
    "kneeling": ["{b} kneeling", "{b} sitting on its knees", "kneeling on the ground", "on its knees"],
    "lying_back": ["{b} lying on its back", "lying down face up", "{b} flat on its back on the floor",
                   "resting on the back"],
    "lying_front": ["{b} lying face down", "{b} lying on its belly", "lying flat on the front", "prone on the floor"],
    "upside_down": ["{b} upside down", "{b} standing on its head", "inverted, head on the ground", "a headstand"],
    "fallen": ["{b} fallen over", "{b} collapsed on the ground", "{b} lying in a heap", "{b} tumbling to the ground"],
    "still": ["not moving", "{b} holding still", "motionless", "staying in place"],
    "walking": ["{b} walking forward", "walking slowly", "{b} taking steps forward", "a calm walk", "walk forward"],
    "running": ["{b} running fast", "sprinting forward", "{b} runs quickly", "fast running", "run as fast as possible"],
    "backward": ["{b} moving backwards", "going backward", "{b} walking in reverse", "retreating backwards"],
    "flipping": ["{b} doing a flip", "{b} spinning around", "somersault", "{b} rolling over and over",
                 "doing backflips"],
    "one_foot": ["{b} standing on one leg", "balancing on one foot", "one leg raised", "lifting one foot"],
    "high_kick": ["{b} kicking high", "a high kick", "{b} kicks a leg up in the air", "leg raised above the head"],
    "legs_up": ["{b} lying on its back with legs in the air", "legs up in the air", "feet pointing at the sky",
                "kicking its legs while lying down"],
    "falling": ["{b} falling down", "{b} losing balance", "toppling over", "{b} is about to fall"],
    "hands_up": ["{b} raising both hands", "arms up above the head", "{b} with its hands in the air",
                 "reaching for the sky"],
    "getting_up": ["{b} getting up", "{b} standing up from the ground", "rising to its feet", "{b} recovering"],
}
BODY_NAMES = {"walker": ["a walker", "the robot", "a two-legged robot", "the figure"],
              "cheetah": ["a cheetah", "the robot", "the four-limbed robot"],
              "quadruped": ["a quadruped", "the robot", "the four-legged robot", "the ant"],
              "stickman": ["a stickman", "the robot", "a humanoid", "the stick figure"]}
POSTURES = ["standing", "crouching", "kneeling", "lying_back", "lying_front", "upside_down", "fallen"]
MOTIONS = ["still", "walking", "running", "backward", "flipping", "falling", "getting_up"]
DETAILS = ["one_foot", "high_kick", "legs_up", "hands_up"]


def window_concepts(f: dict[str, np.ndarray], body: str) -> list[str]:
    """Concept labels of one window from its per-step features (each an array over the window)."""
    h, up, nose = f["torso_height"].mean(), f["upright"].mean(), f["nose_up"].mean()
    # signed mean: a flip keeps turning one way (> 2 rad over the 0.4 s window); a fall or a flail does not
    speed, spin = f["speed"].mean(), abs(f["spin"].mean())
    dh = f["torso_height"][-1] - f["torso_height"][0]
    stand_h, lie_h = {"walker": (1.1, 0.3), "cheetah": (0.55, 0.3), "quadruped": (0.45, 0.25),
                      "stickman": (1.0, 0.3)}.get(body, (1.0, 0.3))
    two_legged = body in ("walker", "stickman")
    concepts: list[str] = []
    if up < -0.5:
        concepts.append("upside_down")
    elif h < lie_h and abs(up) < 0.5 and nose > 0.5:
        concepts.append("lying_back")
    elif h < lie_h and abs(up) < 0.5 and nose < -0.5:
        concepts.append("lying_front")
    elif up > 0.8 and h >= stand_h:
        concepts.append("standing")
    elif two_legged and up > 0.8 and max(f["right_shin_height"].mean(), f["left_shin_height"].mean()) < 0.15:
        concepts.append("kneeling")
    elif up > 0.6 and h >= 0.5 * stand_h:
        concepts.append("crouching")
    else:
        concepts.append("fallen")
    if spin > 5.0:
        concepts.append("flipping")
    elif speed > 3.0:
        concepts.append("running")
    elif speed > 0.5:
        concepts.append("walking")
    elif speed < -0.5:
        concepts.append("backward")
    elif dh < -0.25:
        concepts.append("falling")
    elif dh > 0.25:
        concepts.append("getting_up")
    elif np.abs(f["speed"]).max() < 0.2 and spin < 0.5:
        concepts.append("still")
    if two_legged:
        feet = np.maximum(f["right_foot_height"], f["left_foot_height"]).mean()
        low_foot = np.minimum(f["right_foot_height"], f["left_foot_height"]).mean()
        if concepts[0] == "lying_back" and low_foot > 0.6:
            concepts.append("legs_up")
        elif up > 0.7 and feet > 1.0:
            concepts.append("high_kick")
        elif concepts[0] == "standing" and feet > 0.35 and low_foot < 0.12:
            concepts.append("one_foot")
    if body == "stickman" and concepts[0] == "standing":
        low_hand = np.minimum(f["right_hand_height"], f["left_hand_height"]).mean()
        if low_hand > f["head_height"].mean() + 0.1:
            concepts.append("hands_up")
    return concepts


def caption(concepts: list[str], body: str, rng: np.random.Generator) -> str:
    """One random wording of a window's concepts, e.g. 'the robot lying on its back, legs up in the air'."""
    names = BODY_NAMES.get(body, ["the robot"])
    parts = []
    for i, concept in enumerate(concepts):
        text = str(rng.choice(WORDINGS[concept]))
        name = str(rng.choice(names)) if i == 0 else "it"
        parts.append(text.replace("{b}", name))
    return ", ".join(parts) if rng.random() < 0.5 else " and ".join(parts)
