"""The public face: a small ``ap.__all__``, namespaces for the rest, and ``@wf.step`` references."""

from __future__ import annotations

import importlib
import pickle

import pytest

import agentplex as ap


def test_the_top_level_is_small_sorted_and_every_name_imports() -> None:
    assert len(ap.__all__) <= 50
    assert ap.__all__ == sorted(ap.__all__)
    assert len(set(ap.__all__)) == len(ap.__all__)
    namespace: dict[str, object] = {}
    exec("from agentplex import *", namespace)
    assert set(ap.__all__) <= set(namespace)


def test_the_registration_points_and_their_base_classes_are_at_the_top() -> None:
    for name in (
        "Provider",
        "Request",
        "Completion",
        "register_provider",
        "Executor",
        "register_executor",
        "RunStore",
        "register_store",
        "open_store",
    ):
        assert name in ap.__all__, name
    for base in (ap.Provider, ap.Executor, ap.RunStore):
        assert "Writing one" in (base.__doc__ or "") or "Writing one" in (
            importlib.import_module(base.__module__).__doc__ or ""
        ), f"{base.__name__} does not say how to write one"


def test_events_and_exceptions_are_namespaces_for_the_rest() -> None:
    assert ap.events.NodeFailed.__name__ == "NodeFailed"
    assert issubclass(ap.exceptions.CycleError, ap.AgentplexError)
    assert ap.exceptions.AgentplexError is ap.AgentplexError
    for moved in ("CycleError", "NodeFailed", "Scheduler", "benchmark", "MapNode"):
        assert moved not in ap.__all__
        assert moved not in dir(ap)


def test_names_that_left_the_top_are_gone_from_it() -> None:
    for name in ("ConfigError", "NodeStarted", "Scheduler", "MapNode", "benchmark"):
        with pytest.raises(AttributeError):
            getattr(ap, name)
    assert ap.exceptions.ConfigError.__module__ == "agentplex.exceptions"
    assert ap.events.NodeStarted.__module__ == "agentplex.events"


def test_no_top_level_name_shadows_a_module() -> None:
    for name in ap.__all__:
        try:
            module = importlib.import_module(f"agentplex.{name}")
        except ImportError:
            continue
        assert getattr(ap, name) is module, f"ap.{name} hides the module agentplex.{name}"


# -- @wf.step returns a node reference ---------------------------------------------


def test_a_step_goes_in_depends_on_and_still_calls_its_function() -> None:
    wf = ap.Workflow("steps")
    research = wf.agent("researcher", "Research {topic}")

    @wf.step(depends_on=[research])
    def word_count(researcher: str) -> int:
        """Count the words."""
        return len(researcher.split())

    @wf.step(depends_on=[word_count])
    def doubled(word_count: int) -> int:
        return 2 * word_count

    wf.agent("writer", "Write about {word_count} words", depends_on=[word_count, doubled])
    assert isinstance(word_count, ap.Step)
    assert word_count == "word_count"
    assert word_count("three little words") == 3  # a direct call is the function's
    assert word_count.__name__ == "word_count"
    assert word_count.__doc__ == "Count the words."
    assert wf.nodes["writer"].depends_on == ("word_count", "doubled")
    assert all(type(dep) is str for dep in wf.nodes["writer"].depends_on)
    result = ap.run(wf, inputs={"topic": "tides"})
    assert result.ok
    assert result.outputs["doubled"] == 2 * len(result.outputs["researcher"].split())


def test_a_step_can_be_added_again_with_wf_function() -> None:
    wf = ap.Workflow("again")

    @wf.step()
    def one() -> int:
        return 1

    other = wf.function(one, id="one_more")
    node = wf.nodes[other]
    assert node.fn is one.__wrapped__  # the function itself, not the reference


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (["a"], r"depends on \['a'\], which is not a node reference"),
        ({"x": 1}, r"depends on \{'x': 1\}"),
        (3, "depends on 3"),
        (None, "depends on None"),
        (len, "the function 'len'"),
    ],
)
def test_a_wrong_object_in_depends_on_is_a_workflow_error_naming_the_node(
    bad: object, expected: str
) -> None:
    wf = ap.Workflow("wrong")
    wf.agent("researcher", "Research")
    with pytest.raises(ap.exceptions.WorkflowError, match=expected) as caught:
        wf.agent("writer", "Write", depends_on=["researcher", bad])  # type: ignore[list-item]
    assert not isinstance(caught.value, TypeError)
    assert caught.value.node_id == "writer"
    assert caught.value.field == "depends_on"
    assert "Fix:" in str(caught.value)


def test_depends_on_that_is_no_list_says_how_to_write_one() -> None:
    wf = ap.Workflow("wrong")
    research = wf.agent("researcher", "Research")
    with pytest.raises(
        ap.exceptions.DependencyError, match=r"Fix: write depends_on=\['researcher'\]"
    ):
        wf.agent("writer", "Write", depends_on=research)
    with pytest.raises(ap.exceptions.DependencyError, match="must be a list"):
        wf.agent("writer", "Write", depends_on=3)  # type: ignore[arg-type]


def test_a_function_added_by_wf_function_names_its_id_in_the_fix() -> None:
    wf = ap.Workflow("wrong")

    def clean() -> str:
        return "x"

    wf.function(clean, id="cleaned")
    with pytest.raises(ap.exceptions.DependencyError, match="use its node id 'cleaned'"):
        wf.agent("writer", "Write", depends_on=[clean])  # type: ignore[list-item]


wf_module = ap.Workflow("module_level")


@wf_module.step(cpu_bound=True)
def squared_pid(x: int = 3) -> tuple[int, int]:
    import os

    return os.getpid(), x * x


def test_a_module_level_step_runs_in_a_process_pool_and_pickles_by_name() -> None:
    assert pickle.loads(pickle.dumps(squared_pid)) is squared_pid
    result = ap.run(wf_module)
    assert result.ok, result.nodes["squared_pid"].error
    pid, square = result.outputs["squared_pid"]
    assert square == 9
    import os

    assert pid != os.getpid()
