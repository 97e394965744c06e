from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from querysep.errors import ConfigError, DataError, error_line


class _BrokenClips(Dataset[torch.Tensor]):
    """A dataset whose second item cannot be read, as a corrupt clip in a manifest."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 1:
            raise DataError("clip b.wav: not an audio file (corrupt)")
        return torch.zeros(2)


def test_an_error_raised_in_a_dataloader_worker_keeps_its_own_line() -> None:
    """PyTorch re-raises a worker's error in the main process with the worker's traceback as
    its message: the line shown is the error's own message, not "Caught DataError in
    DataLoader worker process 0." followed by the traceback folded into one line."""
    loader = DataLoader(_BrokenClips(), batch_size=1, num_workers=1)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert str(caught.value).startswith("Caught DataError in DataLoader worker process 0.")
    assert error_line(caught.value) == "clip b.wav: not an audio file (corrupt)"


def test_error_line_folds_a_message_to_one_line_and_leaves_bugs_alone() -> None:
    assert error_line(ConfigError("lr: expected\n a number")) == "lr: expected a number"
    assert error_line(FileNotFoundError(2, "No such file or directory", "x.wav")) == (
        "No such file or directory: x.wav"
    )
    assert error_line(ValueError("a bug")) is None
    assert error_line(OSError("no file name: a bug")) is None
