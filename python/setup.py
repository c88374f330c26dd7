"""Installs the omnibal Python client (standard library only): pip install --no-build-isolation ./python"""
from setuptools import setup

setup(
    name="omnibal",
    version="0.1.0",
    description="Balanced, deterministic VLM training batches from the omnibal sidecar (needs Node.js and the omnibal npm package)",
    license="MIT",
    packages=["omnibal"],
    python_requires=">=3.8",
)
