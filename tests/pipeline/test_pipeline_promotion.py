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


def test_real_success_decides_when_both_have_enough_labelled_rollouts():
    from pipeline.promotion import REAL_SUCCESS, RealSuccess

    better, worse = RealSuccess(9, 10), RealSuccess(6, 10)
    # A candidate with a worse validation loss is promoted on real success...
    d = decide(Scores(None, 0.5, better), Scores(None, 0.1, worse), "champion v3")
    assert d.promote and d.rule == REAL_SUCCESS
    assert d.reason == "real success: candidate 9/10 (90%, 95% CI 60%-98%) > champion v3 6/10 (60%, 95% CI 31%-83%)"
    # ...and one with a better validation loss refused on it.
    d = decide(Scores(None, 0.1, worse), Scores(None, 0.5, better), "champion v3")
    assert not d.promote and d.rule == REAL_SUCCESS and "6/10 (60%" in d.reason and " < champion v3 9/10" in d.reason
    # It outranks simulator success too, and the floor still applies to it.
    assert decide(Scores(0.1, 0.5, better), Scores(0.9, 0.1, worse)).promote
    d = decide(Scores(None, 0.1, RealSuccess(0, 10)), Scores(None, 0.5, RealSuccess(0, 12)))
    assert not d.promote and "not above the floor of 0.0%" in d.reason and d.rule == REAL_SUCCESS


def test_too_few_real_rollouts_fall_back_to_the_offline_rule_and_say_why():
    from pipeline.promotion import SIM_SUCCESS, VAL_LOSS, RealSuccess

    d = decide(Scores(None, 0.5, RealSuccess(4, 4)), Scores(None, 0.1, RealSuccess(1, 10)), "champion v3")
    assert not d.promote and d.rule == VAL_LOSS
    assert d.reason.startswith("validation loss: only 4 labelled real rollouts of the candidate (< 10); ")
    d = decide(Scores(None, 0.1, RealSuccess(9, 10)), Scores(None, 0.5, None), "champion v3")
    assert d.promote and "only 0 labelled real rollouts of champion v3 (< 10)" in d.reason
    # The threshold is configurable; with a simulator the offline rule is simulator success.
    d = decide(Scores(0.9, 0.5, RealSuccess(1, 3)), Scores(0.2, 0.1, RealSuccess(3, 3)), min_real_rollouts=4)
    assert d.promote and d.rule == SIM_SUCCESS and d.reason.startswith("simulator success: only 3 labelled")
    assert not decide(Scores(0.9, 0.5, RealSuccess(1, 3)), Scores(0.2, 0.1, RealSuccess(3, 3)),
                      min_real_rollouts=3).promote
    # A real tie falls back as well, and says so.
    d = decide(Scores(None, 0.1, RealSuccess(5, 10)), Scores(None, 0.5, RealSuccess(5, 10)))
    assert d.promote and d.rule == VAL_LOSS and "real success ties" in d.reason


def test_the_record_names_the_rule_and_the_real_counts():
    from pipeline.promotion import REAL_SUCCESS, Decision, RealSuccess, describe_record, promotion_record

    scores = Scores(None, 0.25, RealSuccess(9, 10))
    assert Scores.from_tags(scores.to_tags()) == scores
    record = promotion_record(4, scores, Decision(True, "real success: candidate 9/10 > champion v3 6/10", REAL_SUCCESS))
    line = describe_record(record)
    assert "real success 9/10 (90%, 95% CI 60%-98%)" in line and "(decided by real success)" in line
    assert describe_record({"val_loss": 0.2, "primary_metric": "val_loss", "reason": "r"}) == \
        "validation loss 0.2 (primary: val_loss): r"
