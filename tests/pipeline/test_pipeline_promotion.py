"""The promotion gate's rules, one by one."""

from pipeline.promotion import Scores, decide


def test_first_candidate_becomes_champion():
    d = decide(Scores(0.2, 1.0), None)
    assert d.promote and "no champion" in d.reason


def test_success_rate_is_the_primary_metric():
    assert decide(Scores(0.9, 5.0), Scores(0.8, 0.1)).promote  # better success wins despite a worse loss
    d = decide(Scores(0.7, 0.01), Scores(0.8, 5.0))
    assert not d.promote and "70.0% < champion's 80.0%" in d.reason


def test_ties_fall_back_to_validation_loss():
    assert decide(Scores(0.5, 0.1), Scores(0.5, 0.2)).promote
    d = decide(Scores(0.5, 0.2), Scores(0.5, 0.2))
    assert not d.promote and "ties" in d.reason


def test_without_a_simulator_validation_loss_decides():
    assert decide(Scores(None, 0.1), Scores(None, 0.2)).promote
    assert not decide(Scores(None, 0.3), Scores(None, 0.2)).promote
    assert "not comparable" in decide(Scores(None, 0.1), Scores(0.9, 0.2)).reason
    assert Scores.from_tags(Scores(0.5, 0.25).to_tags()) == Scores(0.5, 0.25)
