"""dwdaemon: a DICOMweb daemon on Twisted."""

from setuptools import find_packages, setup

setup(
    name="dwdaemon",
    version="0.1.0",
    description="DICOMweb daemon (STOW-RS, QIDO-RS, WADO-RS, WADO-URI), Orthanc-style core API",
    python_requires=">=3.11",
    packages=find_packages(include=["dwdaemon", "dwdaemon.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["dicomweb.py"], "dwdaemon.web": ["static/*"]},
    install_requires=[
        "twisted[tls]>=26.10",  # Site(parsePOSTFormSubmission=False)
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
        "imagecodecs>=2024.1",
        "orjson>=3.9",
        "xxhash>=3.4",  # stored files' checksum (XXH3-128), see dwdaemon.store.storage
        "prometheus_client>=0.17",
        "tqdm>=4.60",
    ],
    extras_require={
        "postgres": ["psycopg[binary]>=3.1"],
        "test": ["dicomweb-client>=0.59", "requests>=2.28", "ruff>=0.5", "psycopg[binary]>=3.1",
                 "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": ["dwdaemon = dwdaemon.cli.main:main"]},
    zip_safe=False,
)
