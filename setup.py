"""clockd's one C extension; everything else about the build is in pyproject.toml.

The punch chain's links in C (clockd/_chainlinks.c), with OpenSSL's sha256. Optional: where it
cannot be built (no compiler, or no OpenSSL headers), clockd computes the same links in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "clockd._chainlinks",
            sources=["clockd/_chainlinks.c"],
            libraries=["crypto"],
            optional=True,
        )
    ]
)
