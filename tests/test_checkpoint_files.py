"""Checkpoint files on disk: every unusable file gives one clear error naming it.

Empty, truncated, text, garbage, edited (checksum) and untrusted (pickled
objects) files raise :class:`CheckpointError` naming the file, from
``load_checkpoint``, from ``fit(resume=True)`` and, with exit code 2, from the
CLI. Temporary files of killed writes are removed; an output folder that
cannot be written is reported before any training.
"""

from __future__ import annotations

import random

import pyro
import pytest
import torch

from pyro_genmodels.cli import main
from pyro_genmodels.models import VAE
from pyro_genmodels.optim import Adam
from pyro_genmodels.training import fit
from pyro_genmodels.training.files import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

X = torch.rand(16, 6, generator=torch.Generator().manual_seed(0)).round()


def _train(folder, epochs=1, resume=False, callbacks=()):
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden_dims=(8,))
    return fit(
        vae.model,
        vae.guide,
        X,
        optim=Adam({"lr": 0.01}),
        epochs=epochs,
        batch_size=8,
        checkpoint_dir=folder,
        resume=resume,
        callbacks=callbacks,
        progress=False,
    )


@pytest.fixture
def good(tmp_path):
    _train(tmp_path / "run")
    return (tmp_path / "run" / "checkpoint.pt").read_bytes()


BROKEN = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "text": lambda good: b"epoch: 3\nloss: 0.5\n",
    "garbage": lambda good: bytes(random.Random(0).randrange(256) for _ in range(4096)),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_unreadable_checkpoint_is_one_clear_error_naming_the_file(tmp_path, good, kind):
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(BROKEN[kind](good))
    with pytest.raises(CheckpointError, match="checkpoint.pt") as error:
        load_checkpoint(path)
    assert str(error.value).strip() and str(path) in str(error.value)
    pyro.clear_param_store()
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        _train(tmp_path / "run", epochs=2, resume=True)


def test_single_byte_corruptions_never_load_changed_values(tmp_path, good):
    reference = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    path = tmp_path / "bad.pt"
    rng = random.Random(1)
    refused = 0
    for _ in range(60):
        data = bytearray(good)
        position = rng.randrange(len(data))
        data[position] = (data[position] + rng.randrange(1, 256)) % 256
        path.write_bytes(bytes(data))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError:
            refused += 1
            continue
        # A change the checksum cannot see (zip metadata) must leave every value intact.
        assert _same(loaded, reference), f"byte {position} changed values silently"
    assert refused >= 40


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def test_edited_payload_fails_the_checksum(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "w": torch.ones(3)})
    payload = torch.load(path, weights_only=True)
    payload["w"][1] = 2.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="fails its checksum"):
        load_checkpoint(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "obj": _Pickled()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


class _Pickled:
    pass


def test_a_checkpoint_of_another_kind_is_named(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"format_version": FORMAT_VERSION, "state_dict": {}})
    with pytest.raises(CheckpointError, match=r"lacks the entries \['epoch'"):
        _train(tmp_path / "run", epochs=2, resume=True)


def test_stale_temporary_files_are_removed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    stale = [folder / ".checkpoint.pt.k1ll3d.tmp", folder / ".last_good.pt.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    _train(folder, epochs=1)
    assert not (folder / ".checkpoint.pt.k1ll3d.tmp").exists()
    (folder / ".checkpoint.pt.again.tmp").write_bytes(b"")
    pyro.clear_param_store()
    _train(folder, epochs=1, resume=True)  # nothing to train: resume alone cleans up
    assert not list(folder.glob(".*.tmp"))


def test_unwritable_checkpoint_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    epochs_run = []
    with pytest.raises(ValueError, match="checkpoint_dir must be a writable folder"):
        _train(blocker / "run", epochs=3, callbacks=[lambda state: epochs_run.append(1)])
    assert epochs_run == []


@pytest.mark.parametrize("name", ["checkpoint.pt", "best.pt", "last_good.pt"])
def test_a_run_file_that_is_a_folder_fails_before_training(tmp_path, name):
    (tmp_path / name).mkdir()
    epochs_run = []
    with pytest.raises(ValueError, match=f"{name}' is a directory"):
        _train(tmp_path, epochs=3, callbacks=[lambda state: epochs_run.append(1)])
    assert epochs_run == []


# ----------------------------------------------------------------------------- CLI

TINY = ["--epochs", "1", "--z-dim", "2", "--hidden", "8", "--num-samples", "30", "--quiet"]


def test_cli_unwritable_out_exits_2_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for argv in (["train", "vae", "--out", str(blocker / "run")], ["zoo", "--out", str(blocker)]):
        with pytest.raises(SystemExit) as error:
            main([*argv, *TINY])
        assert error.value.code == 2
        assert "--out must be a writable folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "target,content,match",
    [
        ("model.pt", b"", "model.pt' is empty"),
        ("model.pt", b"garbage" * 50, "model.pt' cannot be read"),
        ("config.json", b"{not json", "config.json' is not readable JSON"),
        ("config.json", b"[1, 2]", "config.json' must hold a JSON object"),
        ("checkpoints/checkpoint.pt", b"\x00" * 64, "checkpoint.pt' cannot be read"),
    ],
)
def test_cli_broken_run_folder_exits_2_naming_the_file(tmp_path, capsys, target, content, match):
    run = tmp_path / "run"
    main(["train", "vae", "--out", str(run), *TINY])
    (run / target).write_bytes(content)
    command = ["evaluate", "--run", str(run), "--num-samples", "30"]
    if target.startswith("checkpoints"):
        command = ["train", "vae", "--out", str(run), "--resume", *TINY]
    capsys.readouterr()
    with pytest.raises(SystemExit) as error:
        main(command)
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err
