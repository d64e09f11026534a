"""Reading back the FIM examples the training transform writes."""

from training.fim import Sentinels


def split_fim(ids: list[int], s: Sentinels) -> tuple[str, list[int], list[int], list[int]]:
    """Undo one FIM example: (order, prefix ids, suffix ids, middle ids)."""
    assert ids[0] == s.prefix
    if ids[1] == s.suffix:  # SPM: prefix and middle both follow <fim_middle>
        mid = ids.index(s.middle)
        return "spm", [], ids[2:mid], ids[mid + 1 :]
    suf, mid = ids.index(s.suffix), ids.index(s.middle)
    return "psm", ids[1:suf], ids[suf + 1 : mid], ids[mid + 1 :]
