"""`add --wait` looks for its request's child often while a manual add's child is due."""

from cli.scheduler import _follow_pause


def test_polls_every_50_ms_for_the_first_two_seconds() -> None:
    # The old loop grew its pause x1.5 from 50 ms, so a child started 0.2 s after submit was
    # seen only at ~0.4 s: a manual add under a backlog paid the difference (p95 4x idle).
    waited, looks = 0.0, 0
    while waited < 2.0:
        pause = _follow_pause(waited)
        assert pause == 0.05
        waited += pause
        looks += 1
    assert looks >= 39


def test_backs_off_to_one_second_for_long_waits() -> None:
    assert 0.05 <= _follow_pause(2.5) <= 1.0
    assert _follow_pause(60.0) == 1.0
    pauses = [_follow_pause(t / 10) for t in range(0, 600)]
    assert pauses == sorted(pauses)
