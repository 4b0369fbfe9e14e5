"""The promotion gate's rules, one by one."""

from pipeline.promotion import Floor, Scores, decide


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


def test_a_candidate_below_the_floor_is_never_promoted_not_even_the_first():
    d = decide(Scores(0.0, 0.01), None)  # the default floor: a policy that never succeeds is not deployed
    assert not d.promote and "not above the floor of 0.0%" in d.reason
    assert not decide(Scores(0.5, 0.01), Scores(0.2, 0.5), floor=Floor(success_rate=0.6)).promote
    assert decide(Scores(0.0, 0.01), None, floor=Floor(success_rate=-1.0)).promote  # floor off
    # Without a simulator the floor on success does not apply; an optional ceiling on validation loss does.
    assert decide(Scores(None, 0.3), None).promote
    d = decide(Scores(None, 0.3), None, floor=Floor(val_loss=0.2))
    assert not d.promote and "above the ceiling of 0.2" in d.reason
