"""The tiny template's model is made by the node that serves it, never by the control plane."""

import subprocess
import sys

from rota.models import generator
from support.procs import REPO


def test_the_node_serving_the_tiny_template_generated_its_model_the_control_plane_did_not(llm, cluster):
    on_node = cluster.settings.home / "models" / "tiny"  # the embedded head's ROTA_MODELS_DIR
    assert (on_node / "ROTA_TINY_MODEL").is_file() and (on_node / "config.json").is_file()
    assert not (llm.home / "models").exists()  # the control plane's home holds no model
    assert llm.api.get("/endpoints/tiny").json()["model"] == "rota:tiny"


def test_replicas_starting_together_on_one_node_share_one_complete_model(tmp_path):
    """Three processes (replicas are processes) generating at once."""
    code = f"import sys; sys.path.insert(0, {str(REPO / 'serve_apps')!r}); from _tiny_model import ensure; print(ensure(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    found = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert found == [str(tmp_path / "tiny")] * 3
    gen = generator()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no scratch folder left behind
    marker = tmp_path / "tiny" / gen.MARKER
    before = marker.stat().st_mtime_ns
    assert gen.ensure(tmp_path) == tmp_path / "tiny" and marker.stat().st_mtime_ns == before  # not made twice


def test_a_model_left_half_made_is_replaced_not_served(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text("{")  # a generation killed half way: no marker
    gen = generator()
    assert gen.ensure(tmp_path) == tmp_path / "tiny" and (tmp_path / "tiny" / gen.MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
