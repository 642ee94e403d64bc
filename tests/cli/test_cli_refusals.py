"""Refused commands (issue 6): one line naming what and where, exit 2, every byte of the repository unchanged."""

import shutil

import pytest
from cli_helpers import repo_bytes


@pytest.fixture
def repo_with_commit(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    return tmp_path / ".rewardkit"


def _refused(cli, repo, *args, naming=()):
    before = repo_bytes(repo)
    code, out, err = cli(*args)
    assert code == 2, (args, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for what in naming:
        assert what in err, (what, err)
    assert repo_bytes(repo) == before, args
    return err


@pytest.mark.parametrize("alone", [True, False])
def test_pickled_weights_are_refused(cli, tmp_path, tiny_model_dir, repo_with_commit, alone):
    """pytorch_model.bin (torch.save: a pickle) is refused as weights, alone or beside model.safetensors."""
    folder = shutil.copytree(tiny_model_dir, tmp_path / "pickled")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")  # a pickle
    if alone:
        (folder / "model.safetensors").unlink()
    _refused(cli, repo_with_commit, "commit", folder, "-m", "pickled",
             naming=[str(folder / "pytorch_model.bin"), "pickled weights are refused", "safetensors only"])
