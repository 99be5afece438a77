"""pela.data.loader: the DataLoader, batches prepared in worker processes if asked."""

import pytest

from pela import PelaError
from pela.data.loader import make_loader


def test_workers_prepare_the_same_batches():
    data = list(range(10))
    batches = [list(make_loader(data, lambda xs: sum(xs), workers=w, batch_size=4)) for w in (0, 2)]
    assert batches[0] == batches[1] == [6, 22, 17]
    with pytest.raises(PelaError, match="workers must be an integer >= 0"):
        make_loader(data, sum, workers=-1)
