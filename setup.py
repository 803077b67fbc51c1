"""dwdaemon: a DICOMweb daemon on Twisted."""

from setuptools import find_packages, setup

setup(
    name="dwdaemon",
    version="0.1.0",
    description="DICOMweb daemon (STOW-RS, QIDO-RS, WADO-RS, WADO-URI), Orthanc-style core API",
    python_requires=">=3.11",
    packages=find_packages(include=["dwdaemon", "dwdaemon.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["dicomweb.py"]},
    install_requires=[
        "twisted[tls]>=23.10",
        "klein>=23.5",
        "pydicom>=3.0",
        "pillow>=10",
        "numpy>=1.26",
        "treq>=23.11",
        "service-identity>=23.1",
        "pyopenssl>=23",
        "cryptography>=41",
        "pylibjpeg>=2.0",
        "pylibjpeg-libjpeg>=2.1",
        "pylibjpeg-openjpeg>=2.3",
        "pylibjpeg-rle>=2.0",
        "pyjpegls>=1.4",
        "orjson>=3.9",
    ],
    extras_require={
        "postgres": ["psycopg[binary]>=3.1"],
        "test": ["dicomweb-client>=0.59", "requests>=2.28", "ruff>=0.5", "psycopg[binary]>=3.1"],
    },
    zip_safe=False,
)
