"""Command-line grammar of the conversation lifecycle and definition commands.

These are `end`, `handoff`, `resume`, `add-message`, `run-citation`,
`run-outcome`, and the `admin` lists of pathways, citation schemas and
outcomes.
"""

from __future__ import annotations

import argparse
from typing import Any

from parley_client.cli_values import uint32


def _conversation_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("conversation_id", metavar="CONVERSATION_ID")


def add_lifecycle_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the commands that act on one existing conversation."""
    end = commands.add_parser(
        "end",
        parents=[common],
        help="end a conversation and print its citations and outcome results",
    )
    _conversation_argument(end)
    end.add_argument(
        "--reason",
        default="",
        metavar="REASON",
        help="UPPER_SNAKE_CASE end reason (default: ENDED_BY_API)",
    )
    end.add_argument(
        "--actor",
        default="",
        metavar="NAME",
        help="who ends it, stored as the end actor (default: api)",
    )
    end.set_defaults(command="end")

    handoff = commands.add_parser(
        "handoff",
        parents=[common],
        help="hand a conversation to a human: the agent stops replying and "
        "the inactivity timeout is suspended",
    )
    _conversation_argument(handoff)
    handoff.add_argument(
        "--actor", default="", metavar="NAME", help="the human who takes over"
    )
    handoff.set_defaults(command="handoff")

    resume = commands.add_parser(
        "resume",
        parents=[common],
        help="give a handed-off conversation back to the agent and restart its timers",
    )
    _conversation_argument(resume)
    resume.set_defaults(command="resume")

    add_message = commands.add_parser(
        "add-message",
        parents=[common],
        help="send a message written by a human agent",
    )
    _conversation_argument(add_message)
    add_message.add_argument("--text", required=True, help="message text")
    add_message.add_argument(
        "--actor", default="", metavar="NAME", help="the human agent who wrote it"
    )
    add_message.add_argument(
        "--idempotency-key", metavar="KEY", help="default: a new uuid4"
    )
    add_message.add_argument(
        "--retries",
        type=uint32,
        default=3,
        metavar="N",
        help="retries after UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED "
        "(default: 3)",
    )
    add_message.set_defaults(command="add-message")

    run_citation = commands.add_parser(
        "run-citation",
        parents=[common],
        help="run a citation schema over a transcript now, without storing the result",
    )
    _conversation_argument(run_citation)
    run_citation.add_argument("schema_id", metavar="SCHEMA_ID")
    run_citation.set_defaults(command="run-citation")

    run_outcome = commands.add_parser(
        "run-outcome",
        parents=[common],
        help="run an outcome script over a conversation now, without storing the "
        "result",
    )
    _conversation_argument(run_outcome)
    run_outcome.add_argument("outcome_id", metavar="OUTCOME_ID")
    run_outcome.set_defaults(command="run-outcome")


def add_definition_lists(actions: Any, common: argparse.ArgumentParser) -> None:
    """Add `admin pathways`, `admin citation-schemas` and `admin outcomes`."""
    for name, description in (
        ("pathways", "list pathways and their versions"),
        ("citation-schemas", "list citation schemas"),
        ("outcomes", "list outcome scripts"),
    ):
        parser = actions.add_parser(name, parents=[common], help=description)
        parser.add_argument(
            "--account", default="", metavar="ID", help="default: the key's account"
        )
        parser.set_defaults(command=f"admin {name}")
