"""Install lpg (the library) and envs (the environments).

    pip install -e ".[dev]"          # library + tests

brax, mujoco and mujoco-mjx are core dependencies: envs/wrappers/brax.py registers the brax tasks
"brax/<env>[-<backend>]" (brax is imported only when such a task is built). Only brax's
environments are used; its training code does not run on this jax.

Versions are pinned to a set verified together on CPU (see BUILD_NOTES.md).
`launch/` and `experiments/` are run from the repository root as `python -m launch.<script>`.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "numpy==2.4.6",
    "flax==0.12.8",
    "optax==0.2.8",
    "chex==0.1.92",
    "rlax==0.1.9",
    "orbax-checkpoint==0.12.8",
    "absl-py==2.5.1",
    "ml-collections==1.1.0",
    "gymnax==1.0.1",
    "six==1.17.0",  # gymnax imports it without declaring it
    "evosax==0.3.2",
    "flashbax==0.1.3",  # lpg/replay.py: replay buffers of off-policy agents (TD3, MetaGenRL)
    "matplotlib==3.11.2",
    "tqdm==4.70.1",
    "tensorboardX==2.6.5",
    "psutil==7.2.2",
    "brax==0.14.2",
    "mujoco==4.0.0",
    "mujoco-mjx==3.17.0",
]

EXTRAS_REQUIRE = {
    "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0"],
}

setup(
    name="lpg",
    version="0.1.0",
    description="JAX framework for discovering reinforcement-learning algorithms (Learned Policy Gradient and friends).",
    python_requires=">=3.11",
    packages=find_packages(include=["lpg", "lpg.*", "envs", "envs.*", "launch", "experiments", "experiments.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "lpg-train-agent=launch.train_agent:cli",
        ],
    },
)
