"""Generated run names in the W&B style: ``adjective-noun-N`` (e.g. ``earnest-sunset-17``).

A name is a human-friendly, non-unique label; the run id is what identifies a run. The word lists
are written for this project: short, friendly, easy to read aloud, nothing that could offend.
"""

from __future__ import annotations

import random

ADJECTIVES: tuple[str, ...] = (
    "amber", "ancient", "azure", "balmy", "bold", "brave", "breezy", "bright", "brisk", "bubbly",
    "calm", "candid", "cheerful", "clever", "cosmic", "cozy", "crimson", "crisp", "curious", "daring",
    "dashing", "dazzling", "deft", "devout", "dreamy", "eager", "earnest", "easy", "electric", "elegant",
    "epic", "fancy", "fearless", "fiery", "fluent", "fluffy", "fond", "fresh", "friendly", "frosty",
    "gallant", "gentle", "giddy", "glad", "gleaming", "glowing", "golden", "graceful", "grand", "happy",
    "hardy", "hearty", "honest", "humble", "icy", "jolly", "jovial", "keen", "kind", "lively",
    "lucky", "lunar", "luminous", "magic", "mellow", "merry", "mighty", "misty", "modest", "noble",
    "nimble", "olive", "patient", "peaceful", "playful", "plucky", "polished", "proud", "quiet", "quick",
    "radiant", "rapid", "rosy", "royal", "rustic", "serene", "shiny", "silent", "silver", "smooth",
    "snowy", "solar", "sparkling", "spry", "stellar", "sunny", "swift", "tidy", "tranquil", "vivid",
    "warm", "wise", "witty", "zesty",
)

NOUNS: tuple[str, ...] = (
    "aurora", "avalanche", "bamboo", "bay", "blaze", "blossom", "breeze", "brook", "butterfly", "canyon",
    "cascade", "cedar", "cliff", "cloud", "comet", "coral", "cosmos", "cove", "crater", "creek",
    "dawn", "delta", "dew", "dream", "dune", "eclipse", "ember", "falcon", "feather", "fern",
    "field", "firefly", "fjord", "flame", "flower", "fog", "forest", "fountain", "frost", "galaxy",
    "garden", "glacier", "glade", "grove", "harbor", "haze", "heron", "hill", "horizon", "island",
    "lagoon", "lake", "leaf", "lighthouse", "lily", "meadow", "meteor", "mist", "moon", "moss",
    "mountain", "nebula", "oak", "ocean", "orbit", "otter", "panda", "pebble", "pine", "planet",
    "pond", "prairie", "pulsar", "quasar", "rain", "rainbow", "reef", "ridge", "river", "sea",
    "shadow", "shore", "sky", "snowflake", "sparrow", "spring", "star", "stone", "stream", "summit",
    "sun", "sunset", "surf", "thunder", "tide", "valley", "vortex", "water", "wave", "willow",
    "wind", "wood",
)


def generate_name(rng: random.Random | None = None) -> str:
    """Return a random run name ``adjective-noun-N`` with ``N`` in 1..999.

    Args:
        rng: the random source; pass a seeded ``random.Random`` for reproducible names. Defaults
            to the module-level generator.

    Returns:
        A name such as ``"earnest-sunset-17"``: lowercase ASCII words joined by ``-``.
    """
    r = rng if rng is not None else random
    return f"{r.choice(ADJECTIVES)}-{r.choice(NOUNS)}-{r.randint(1, 999)}"
