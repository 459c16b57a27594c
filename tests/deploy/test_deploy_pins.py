"""The container recipes and deploy scripts agree with the project's pins (no engine runs here:
this is what can be checked without building them)."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"


def _pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = dict(re.match(r"([\w.-]+)(?:\[[\w,-]+\])?==([\w.]+)$", d).groups()
                for d in project["dependencies"] if "==" in d)
    setup = (REPO / "deploy" / "setup_env.sh").read_text()
    pins["horovod"] = re.search(r"HOROVOD_VERSION=([\d.]+)", setup).group(1)
    pins["python"] = re.search(r">=(3\.\d+)", project["requires-python"]).group(1)
    return pins


def test_cpu_image_uses_the_pinned_python_and_the_setup_script():
    text = (DOCKER / "Dockerfile.cpu").read_text()
    assert re.search(rf"FROM python:{re.escape(_pins()['python'])}\.\d+-", text)
    assert "deploy/setup_env.sh" in text and "openjdk-17" in text


def test_gpu_image_has_the_pinned_tensorflow_horovod_and_matching_cuda():
    pins, text = _pins(), (DOCKER / "Dockerfile.gpu").read_text()
    assert f'"tensorflow[and-cuda]=={pins["tensorflow-cpu"]}"' in text
    assert f'"horovod=={pins["horovod"]}"' in text
    assert f"python{pins['python']}" in text
    # TensorFlow 2.15 is built against CUDA 12.2 and cuDNN 8.9
    assert pins["tensorflow-cpu"].startswith("2.15.")
    assert "nvidia/cuda:12.2." in text and "cudnn8" in text
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in text and r"\[X\] NCCL" in text  # checked build
    assert "constraints" in text  # everything else from the tested set


@pytest.mark.parametrize("script", sorted((REPO / "deploy" / "spark-submit").glob("*.sh")))
def test_spark_submit_templates_are_valid_bash_naming_real_jobs_and_configs(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    config = re.search(r"conf/(\w+\.yaml)", text).group(1)
    assert (REPO / "conf" / config).exists()
    jobs = {p.stem for p in (REPO / "jobs").glob("*.py")}
    assert {"ingest_images", "ingest_text", "train", "predict"} <= jobs
    assert '"jobs/$JOB.py"' in text or "jobs/$JOB.py" in text
