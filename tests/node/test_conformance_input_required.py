"""The conformance suite's ``input-required-result-*`` scenarios (SEP-2322, multi-round-trip requests) against
``echotune-mcp serve --transport http``.

Every scenario is run. Most of them drive the suite's own fixture tools and prompt (``test_input_required_result_*``),
which a product server does not ship: those checks are in the expected-failures baseline below, one reason each, and
the same behaviour is checked on our own tools in tests/confirm (remove_tracks, reorder_playlist, dedupe_playlist,
delete_artifact; over real HTTP in tests/confirm/test_confirm_http.py). Every check that does not depend on a fixture
tool must pass: unsupported-methods, validate-input, ignore-extra-params, and the wire-schema check of every scenario.
If a baselined check starts passing, the test says the baseline is stale.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ANSI, HttpServer, NodeTools, judge_scenario

SCENARIOS = [
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-missing-input-response",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-unsupported-methods",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
    "input-required-result-ignore-extra-params",
    "input-required-result-validate-input",
]

_FIXTURE = "calls the suite's fixture tool {tool} (we answer 'Unknown tool'); "
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "input-required-result-basic-elicitation": {
        "sep-2322-elicitation-incomplete": _FIXTURE.format(tool="test_input_required_result_elicitation") +
        "our elicitation round trip is tests/confirm test_accept_removes_and_keeps_a_snapshot",
    },
    "input-required-result-basic-sampling": {
        "sep-2322-sampling-incomplete": _FIXTURE.format(tool="test_input_required_result_sampling") +
        "no tool of ours samples the client's model",
    },
    "input-required-result-basic-list-roots": {
        "sep-2322-list-roots-incomplete": _FIXTURE.format(tool="test_input_required_result_list_roots") +
        "no tool of ours asks for roots",
    },
    "input-required-result-request-state": {
        "sep-2322-request-state-incomplete": _FIXTURE.format(tool="test_input_required_result_request_state") +
        "our sealed requestState round trip is test_confirm_http",
    },
    "input-required-result-multiple-input-requests": {
        "sep-2322-multiple-inputs-incomplete": _FIXTURE.format(tool="test_input_required_result_multiple_inputs") +
        "a confirmation asks one question",
    },
    "input-required-result-multi-round": {
        "sep-2322-multi-round-r1": _FIXTURE.format(tool="test_input_required_result_multi_round") +
        "a confirmation is one round (re-asked only when the change it describes changed)",
    },
    "input-required-result-missing-input-response": {
        # reported as WARNING (SHOULD-level)
        "sep-2322-missing-response-rerequests": _FIXTURE.format(tool="test_input_required_result_elicitation") +
        "our tools re-ask on a retry without the answer: test_confirm_http",
    },
    "input-required-result-non-tool-request": {
        "sep-2322-non-tool-incomplete": "gets the suite's fixture prompt test_input_required_result_prompt; "
        "our prompts take no input from the person",
    },
    "input-required-result-result-type": {
        "sep-2322-result-type-included": _FIXTURE.format(tool="test_input_required_result_elicitation") +
        "resultType input_required on our own answer is checked in test_confirm_http",
    },
    "input-required-result-tampered-state": {
        "sep-2322-reject-tampered-state": "its prerequisite is an InputRequiredResult from the fixture tool "
        "test_input_required_result_tampered_state; tampered state on delete_artifact is refused in test_confirm_http",
    },
    "input-required-result-capability-check": {
        "sep-2322-respect-client-capabilities": _FIXTURE.format(tool="test_input_required_result_capabilities") +
        "a client without elicitation is never sent one by our tools: test_confirm_http",
    },
}

def test_every_input_required_scenario_is_listed(node_tools: NodeTools, tmp_path: Path) -> None:
    """A suite upgrade that adds a scenario must not go unrun."""
    proc = node_tools.run(node_tools.conformance, "list", cwd=tmp_path, timeout=60)
    listed = set(re.findall(r"(input-required-result-[a-z-]+)", ANSI.sub("", proc.stdout)))
    assert listed == set(SCENARIOS), f"new: {sorted(listed - set(SCENARIOS))}, gone: {sorted(set(SCENARIOS) - listed)}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_input_required_scenario(scenario: str, node_tools: NodeTools, http_server: HttpServer,
                                 tmp_path: Path) -> None:
    judge_scenario(node_tools, http_server, scenario, EXPECTED_FAILURES, tmp_path, baseline_file=Path(__file__).name)
