"""parse_config and load_config: the YAML schema, without a server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml
from conftest import PERSONA_ID, base_config

from server.config_file import ConfigDocument, load_config, parse_config
from server.errors import ParleyError
from server.settings import CarrierSettings, ServerSettings

NUMBER = "+14155550100"


def one_number(sms_config: object) -> str:
    """A document with one account whose number has the given sms_config."""
    document = {
        "accounts": [
            {"id": "acme", "numbers": [{"number": NUMBER, "sms_config": sms_config}]}
        ]
    }
    return yaml.safe_dump(document)


def rejected(text: str, source: str = "test.yaml") -> ParleyError:
    with pytest.raises(ParleyError) as caught:
        parse_config(text, source)
    return caught.value


def test_empty_document_is_default() -> None:
    assert parse_config("") == ConfigDocument()
    assert parse_config("# only a comment\n") == ConfigDocument()
    assert ConfigDocument().server == ServerSettings()
    assert ConfigDocument().carrier == CarrierSettings()


def test_fixture_config_parses() -> None:
    document = parse_config(yaml.safe_dump(base_config()))

    assert document.server.heartbeat_seconds == 1.0
    assert document.carrier.fail_prefixes == {"+1650555019": "30003"}
    assert document.operator_keys == ("ops-test-key-1",)
    assert [account.id for account in document.accounts] == ["acme", "globex"]
    acme = document.accounts[0]
    assert acme.api_keys == ("acme-test-key-1",)
    sms = acme.numbers[0].sms_config
    assert sms is not None
    assert sms.timeout_seconds == 600
    assert sms.warning_message == "Still there?"
    assert sms.restart_after_end is True
    assert acme.numbers[0].whatsapp_config is None
    assert acme.numbers[1].sms_config is None
    persona = acme.personas[0]
    assert persona.id == PERSONA_ID
    assert persona.default_version == "2"
    assert [version.version for version in persona.versions] == ["1", "2"]


def test_unknown_key_names_path() -> None:
    text = yaml.safe_dump(
        {
            "accounts": [
                {
                    "id": "acme",
                    "numbers": [
                        {"number": NUMBER},
                        {"number": "+14155550101", "sms_config": {"timout_seconds": 5}},
                    ],
                }
            ]
        }
    )
    error = rejected(text)

    path = "accounts[0].numbers[1].sms_config.timout_seconds"
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_CONFIG"
    assert error.message.startswith("test.yaml: ")
    assert path in error.message
    assert "timeout_seconds" in error.message
    assert [violation.field for violation in error.violations] == [path]


def test_unknown_top_level_key_rejected() -> None:
    error = rejected("acounts: []\n")
    assert error.reason == "INVALID_CONFIG"
    assert "acounts is not a known key" in error.message
    assert "operator_keys" in error.message


def test_explicit_empty_outcome_ids_present() -> None:
    document = parse_config(
        one_number({"outcome_ids": [], "citation_schema_ids": ["c"]})
    )
    config = document.accounts[0].numbers[0].sms_config

    assert config is not None
    assert config.HasField("outcome_ids")
    assert list(config.outcome_ids.values) == []
    assert list(config.citation_schema_ids.values) == ["c"]


def test_channel_config_presence() -> None:
    empty = parse_config(one_number({})).accounts[0].numbers[0]
    disabled = parse_config(one_number(None)).accounts[0].numbers[0]

    assert empty.sms_config is not None
    assert empty.sms_config.ListFields() == []
    assert disabled.sms_config is None
    assert disabled.whatsapp_config is None


def test_explicit_zero_and_empty_values_present() -> None:
    text = one_number(
        {"timeout_seconds": 0, "pathway_id": "", "restart_after_end": False}
    )
    config = parse_config(text).accounts[0].numbers[0].sms_config

    assert config is not None
    assert config.HasField("timeout_seconds")
    assert config.HasField("pathway_id")
    assert config.HasField("restart_after_end")
    assert not config.HasField("warning_seconds")
    assert not config.HasField("outcome_ids")


@pytest.mark.parametrize(("warning", "timeout"), [(300, 300), (301, 300)])
def test_warning_not_before_timeout_rejected(warning: int, timeout: int) -> None:
    error = rejected(
        one_number({"timeout_seconds": timeout, "warning_seconds": warning})
    )

    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_TIMEOUT_CONFIG"
    assert "accounts[0].numbers[0].sms_config.warning_seconds" in error.message


def test_warning_with_disabled_timeout_accepted() -> None:
    text = one_number({"timeout_seconds": 0, "warning_seconds": 30})
    config = parse_config(text).accounts[0].numbers[0].sms_config
    assert config is not None
    assert config.warning_seconds == 30


@pytest.mark.parametrize("number", ["+1415", "14155550100", "+1 415 CALL NOW", ""])
def test_bad_phone_number_rejected(number: str) -> None:
    text = yaml.safe_dump(
        {"accounts": [{"id": "acme", "numbers": [{"number": number}]}]}
    )
    error = rejected(text)

    assert error.reason == "INVALID_CONFIG"
    assert "accounts[0].numbers[0].number" in error.message


def test_phone_number_normalized() -> None:
    text = yaml.safe_dump(
        {"accounts": [{"id": "a", "numbers": [{"number": "+1 (415) 555-0100"}]}]}
    )
    assert parse_config(text).accounts[0].numbers[0].number == NUMBER


def test_unquoted_phone_number_hint() -> None:
    error = rejected("accounts: [{id: acme, numbers: [{number: +14155550100}]}]")
    assert "must be a string" in error.message
    assert "quotes" in error.message


@pytest.mark.parametrize(
    ("sms_config", "path"),
    [
        ({"timeout_seconds": "600"}, "sms_config.timeout_seconds"),
        ({"timeout_seconds": -1}, "sms_config.timeout_seconds"),
        ({"timeout_seconds": 2**32}, "sms_config.timeout_seconds"),
        ({"timeout_seconds": True}, "sms_config.timeout_seconds"),
        ({"restart_after_end": "yes"}, "sms_config.restart_after_end"),
        ({"outcome_ids": "a"}, "sms_config.outcome_ids"),
        ({"outcome_ids": ["a", 7]}, "sms_config.outcome_ids[1]"),
        ({"outcome_ids": [""]}, "sms_config.outcome_ids[0]"),
        ({"timeout_message": "x" * 1601}, "sms_config.timeout_message"),
        ({"pathway_id": 12}, "sms_config.pathway_id"),
        ([1, 2], "sms_config"),
    ],
)
def test_wrong_channel_value_rejected(sms_config: object, path: str) -> None:
    error = rejected(one_number(sms_config))

    assert error.reason == "INVALID_CONFIG"
    assert f"accounts[0].numbers[0].{path}" in error.message


def test_message_of_1600_chars_accepted() -> None:
    config = parse_config(one_number({"timeout_message": "x" * 1600}))
    assert config.accounts[0].numbers[0].sms_config is not None


@pytest.mark.parametrize("account_id", ["Acme", "a" * 65, "acme corp", ""])
def test_bad_account_id_rejected(account_id: str) -> None:
    error = rejected(yaml.safe_dump({"accounts": [{"id": account_id}]}))
    assert "accounts[0].id" in error.message


def test_account_id_required() -> None:
    error = rejected("accounts: [{display_name: Acme}]")
    assert "accounts[0].id is missing" in error.message


def test_persona_id_lower_cased() -> None:
    text = yaml.safe_dump(
        {"accounts": [{"id": "acme", "personas": [{"id": PERSONA_ID.upper()}]}]}
    )
    assert parse_config(text).accounts[0].personas[0].id == PERSONA_ID


def test_persona_id_must_be_uuid() -> None:
    text = yaml.safe_dump({"accounts": [{"id": "acme", "personas": [{"id": "p-1"}]}]})
    error = rejected(text)
    assert "accounts[0].personas[0].id" in error.message


def test_default_version_must_be_listed() -> None:
    persona = {"id": PERSONA_ID, "default_version": "3", "versions": [{"version": "1"}]}
    error = rejected(
        yaml.safe_dump({"accounts": [{"id": "acme", "personas": [persona]}]})
    )
    assert "accounts[0].personas[0].default_version" in error.message


@pytest.mark.parametrize("version", ["", "v 1", "v/1", "x" * 65])
def test_bad_version_rejected(version: str) -> None:
    persona = {"id": PERSONA_ID, "versions": [{"version": version}]}
    error = rejected(
        yaml.safe_dump({"accounts": [{"id": "acme", "personas": [persona]}]})
    )
    assert "accounts[0].personas[0].versions[0].version" in error.message


def test_version_without_config_is_empty_config() -> None:
    persona = {"id": PERSONA_ID, "versions": [{"version": "2024.05-a_1"}]}
    text = yaml.safe_dump({"accounts": [{"id": "acme", "personas": [persona]}]})
    entry = parse_config(text).accounts[0].personas[0]

    assert entry.default_version == ""
    assert entry.versions[0].config.ListFields() == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("accounts: [{id: a}, {id: a}]", "accounts[1]: account 'a' is already listed"),
        ("operator_keys: [key-12345, key-12345]", "operator_keys[1]"),
        (
            "operator_keys: [key-12345]\naccounts: [{id: a, api_keys: [key-12345]}]",
            "api_keys[0]",
        ),
        ("accounts: [{id: a}]\naccounts: []", "found the key 'accounts' twice"),
        ("operator_keys: [short]", "operator_keys[0] is not a valid key"),
    ],
)
def test_duplicates_and_bad_keys_rejected(text: str, fragment: str) -> None:
    error = rejected(text)
    assert error.reason == "INVALID_CONFIG"
    assert fragment in error.message


def test_duplicate_number_across_accounts_rejected() -> None:
    accounts = [
        {"id": "a", "numbers": [{"number": NUMBER}]},
        {"id": "b", "numbers": [{"number": "+1 415 555 0100"}]},
    ]
    error = rejected(yaml.safe_dump({"accounts": accounts}))
    assert "accounts[1].numbers[0]" in error.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("server: {heartbeat_seconds: 0}", "server.heartbeat_seconds"),
        ("server: {heartbeat_seconds: .inf}", "server.heartbeat_seconds"),
        ("server: {price_per_segment_micros: 1.5}", "server.price_per_segment_micros"),
        ("server: {port: 1}", "server.port is not a known key"),
        ("carrier: {kind: twilio}", "carrier.kind"),
        ("carrier: {sent_after_ms: -5}", "carrier.sent_after_ms"),
        ("carrier: {fail_prefixes: {+1650: '30003'}}", "carrier.fail_prefixes"),
        ("carrier: {fail_prefixes: {'+1650': 30003}}", "carrier.fail_prefixes"),
    ],
)
def test_bad_settings_rejected(text: str, fragment: str) -> None:
    error = rejected(text)
    assert error.reason == "INVALID_CONFIG"
    assert fragment in error.message


def test_settings_sections_parsed() -> None:
    text = (
        "server: {idempotency_retention_hours: 48, price_per_segment_micros: 0}\n"
        "carrier: {kind: simulator, undelivered_prefixes: {'+44': '30005'}}\n"
    )
    document = parse_config(text)

    assert document.server.idempotency_retention_hours == 48.0
    assert document.server.price_per_segment_micros == 0
    assert document.server.heartbeat_seconds == ServerSettings().heartbeat_seconds
    assert document.carrier.undelivered_prefixes == {"+44": "30005"}


@pytest.mark.parametrize(
    "text",
    ["accounts: [", "a: 2001-13-45", "- just a list", "accounts: *missing", "[" * 5000],
)
def test_invalid_yaml_rejected(text: str) -> None:
    error = rejected(text)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_CONFIG"
    assert error.message.startswith("test.yaml: ")


def test_aliases_and_merge_keys_accepted() -> None:
    text = (
        "accounts:\n"
        "  - id: acme\n"
        "    numbers:\n"
        "      - number: '+14155550100'\n"
        "        sms_config: &base {timeout_seconds: 600, warning_seconds: 300}\n"
        "      - number: '+14155550101'\n"
        "        sms_config: {<<: *base, warning_seconds: 60}\n"
    )
    numbers = parse_config(text).accounts[0].numbers
    second = numbers[1].sms_config

    assert second is not None
    assert second.timeout_seconds == 600
    assert second.warning_seconds == 60


def test_alias_expansion_limited() -> None:
    keys = ", ".join(f"key-{index:06d}" for index in range(5000))
    aliases = ", ".join(f"{{id: a{index}, api_keys: *keys}}" for index in range(1, 120))
    text = f"accounts: [{{id: a0, api_keys: &keys [{keys}]}}, {aliases}]"
    error = rejected(text)

    assert error.reason == "INVALID_CONFIG"
    assert "expands to more than" in error.message


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ParleyError) as caught:
        load_config(path)

    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.reason == "CONFIG_UNREADABLE"
    assert str(path) in caught.value.message


def test_load_config_names_file(tmp_path: Path) -> None:
    path = tmp_path / "parley.yaml"
    path.write_text("accounts: [{id: acme, extra: 1}]\n")
    with pytest.raises(ParleyError) as caught:
        load_config(path)

    assert caught.value.message.startswith(f"{path}: accounts[0].extra")


def test_load_config_rejects_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"accounts: [{id: acme, display_name: \xe9}]\n")
    with pytest.raises(ParleyError) as caught:
        load_config(path)

    assert caught.value.reason == "INVALID_CONFIG"
    assert "UTF-8" in caught.value.message


PATHWAY_DEFINITION = {
    "start_node_id": "ask",
    "nodes": [
        {
            "id": "ask",
            "text": "How many guests?",
            "fallback_text": "Please send a number.",
            "edges": [
                {
                    "target_node_id": "done",
                    "keywords": ["guests", "people"],
                    "regex": "[0-9]+",
                    "expression": "reply_number >= 1",
                    "captures": [
                        {
                            "variable": "party_size",
                            "regex": "([0-9]+)",
                            "type": "NUMBER",
                        }
                    ],
                }
            ],
        },
        {"id": "done", "text": "Booked.", "end": True, "end_reason": "BOOKED"},
    ],
}


def definitions_account(**sections: object) -> dict[str, object]:
    """An account entry with one pathway, schema and outcome, updated by `sections`."""
    account: dict[str, object] = {
        "id": "acme",
        "pathways": [
            {
                "id": "booking",
                "versions": [{"version": "1", "definition": PATHWAY_DEFINITION}],
            }
        ],
        "citation_schemas": [
            {
                "id": "contact",
                "variables": [
                    {
                        "name": "plan",
                        "type": "ENUM",
                        "enum_values": ["basic", "pro"],
                        "rules": [{"regex": "(basic|pro)", "confidence": 0.7}],
                    }
                ],
            }
        ],
        "outcomes": [
            {
                "id": "summary",
                "script": "return transcript.length;",
                "time_limit_ms": 250,
                "memory_limit_mb": 16,
            }
        ],
    }
    account.update(sections)
    return account


def definitions_document(*accounts: dict[str, object]) -> str:
    return yaml.safe_dump({"accounts": list(accounts or [definitions_account()])})


def test_definition_sections_parsed() -> None:
    account = parse_config(definitions_document()).accounts[0]

    pathway = account.pathways[0]
    assert pathway.id == "booking"
    assert [version.version for version in pathway.versions] == ["1"]
    definition = pathway.versions[0].definition
    assert definition.start_node_id == "ask"
    assert [node.id for node in definition.nodes] == ["ask", "done"]
    edge = definition.nodes[0].edges[0]
    assert list(edge.keywords) == ["guests", "people"]
    assert edge.expression == "reply_number >= 1"
    assert edge.captures[0].variable == "party_size"
    assert edge.captures[0].type == "NUMBER"
    assert definition.nodes[1].end is True
    assert definition.nodes[1].end_reason == "BOOKED"

    schema = account.citation_schemas[0]
    assert schema.id == "contact"
    assert schema.account_id == ""
    assert list(schema.variables[0].enum_values) == ["basic", "pro"]
    assert schema.variables[0].rules[0].confidence == 0.7

    outcome = account.outcomes[0]
    assert outcome.id == "summary"
    assert outcome.script == "return transcript.length;"
    assert outcome.time_limit_ms == 250
    assert outcome.memory_limit_mb == 16


def test_definition_sections_optional() -> None:
    account = parse_config("accounts: [{id: acme, pathways: null}]").accounts[0]
    assert account.pathways == ()
    assert account.citation_schemas == ()
    assert account.outcomes == ()


def test_definition_unknown_key_names_path() -> None:
    definition = yaml.safe_load(yaml.safe_dump(PATHWAY_DEFINITION))
    definition["nodes"][0]["edges"][0]["captures"][0]["varname"] = "x"
    pathways = [
        {"id": "booking", "versions": [{"version": "1", "definition": definition}]}
    ]
    error = rejected(definitions_document(definitions_account(pathways=pathways)))

    path = (
        "accounts[0].pathways[0].versions[0].definition.nodes[0].edges[0]"
        ".captures[0].varname"
    )
    assert error.reason == "INVALID_CONFIG"
    assert f"{path} is not a known key" in error.message
    assert "variable, regex, type" in error.message
    assert [violation.field for violation in error.violations] == [path]


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        (
            {"pathways": [{"id": "booking", "versions": [], "owner": "x"}]},
            "accounts[0].pathways[0].owner is not a known key",
        ),
        (
            {"outcomes": [{"id": "summary", "script": "return 1;", "account_id": "a"}]},
            "accounts[0].outcomes[0].account_id is not a known key",
        ),
        (
            {"citation_schemas": [{"id": "contact", "updated_at": 5}]},
            "accounts[0].citation_schemas[0].updated_at is not a known key",
        ),
        (
            {
                "outcomes": [
                    {"id": "summary", "script": "return 1;", "time_limit_ms": "500"}
                ]
            },
            "accounts[0].outcomes[0].time_limit_ms must be an integer",
        ),
        (
            {
                "outcomes": [
                    {"id": "summary", "script": "return 1;", "memory_limit_mb": -1}
                ]
            },
            "accounts[0].outcomes[0].memory_limit_mb is -1",
        ),
        (
            {"outcomes": [{"id": "summary"}]},
            "accounts[0].outcomes[0].script is missing",
        ),
        ({"outcomes": {"id": "summary"}}, "accounts[0].outcomes must be a list"),
        (
            {"pathways": [{"id": "booking"}]},
            "accounts[0].pathways[0].versions is missing",
        ),
        (
            {"pathways": [{"id": "booking", "versions": []}]},
            "accounts[0].pathways[0].versions is empty",
        ),
        (
            {"pathways": [{"id": "booking", "versions": [{"version": "1"}]}]},
            "accounts[0].pathways[0].versions[0].definition is missing",
        ),
        (
            {"pathways": [{"id": "book ing", "versions": [{"version": "1"}]}]},
            "accounts[0].pathways[0].id",
        ),
        (
            {
                "pathways": [
                    {
                        "id": "booking",
                        "versions": [{"version": 1, "definition": PATHWAY_DEFINITION}],
                    }
                ]
            },
            "accounts[0].pathways[0].versions[0].version must be a string",
        ),
        (
            {
                "pathways": [
                    {
                        "id": "booking",
                        "versions": [
                            {
                                "version": "1",
                                "definition": {
                                    "start_node_id": "a",
                                    "nodes": [{"end": "yes"}],
                                },
                            }
                        ],
                    }
                ]
            },
            "accounts[0].pathways[0].versions[0].definition.nodes[0].end must be true or false",
        ),
        (
            {
                "pathways": [
                    {
                        "id": "booking",
                        "versions": [
                            {
                                "version": "1",
                                "definition": {
                                    "start_node_id": "a",
                                    "nodes": [
                                        {"id": "a", "edges": [{"keywords": "yes"}]}
                                    ],
                                },
                            }
                        ],
                    }
                ]
            },
            "definition.nodes[0].edges[0].keywords must be a list",
        ),
        (
            {
                "citation_schemas": [
                    {
                        "id": "contact",
                        "variables": [
                            {
                                "name": "a",
                                "type": "STRING",
                                "rules": [{"confidence": 1.5}],
                            }
                        ],
                    }
                ]
            },
            "accounts[0].citation_schemas[0].variables[0].rules[0].confidence is 1.5",
        ),
        (
            {
                "citation_schemas": [
                    {"id": "contact", "variables": [{"enum_values": [1]}]}
                ]
            },
            "accounts[0].citation_schemas[0].variables[0].enum_values[0] must be a string",
        ),
    ],
)
def test_bad_definition_value_rejected(
    sections: dict[str, object], fragment: str
) -> None:
    error = rejected(definitions_document(definitions_account(**sections)))
    assert error.reason == "INVALID_CONFIG"
    assert fragment in error.message


def test_invalid_pathway_names_yaml_path() -> None:
    definition = yaml.safe_load(yaml.safe_dump(PATHWAY_DEFINITION))
    definition["nodes"][0]["edges"][0]["target_node_id"] = "nowhere"
    pathways = [
        {"id": "booking", "versions": [{"version": "1", "definition": definition}]}
    ]
    error = rejected(definitions_document(definitions_account(pathways=pathways)))

    edge_path = "accounts[0].pathways[0].versions[0].definition.nodes[0].edges[0]"
    assert error.reason == "INVALID_PATHWAY"
    assert error.message.startswith(f"test.yaml: {edge_path}")
    assert error.violations[0].field.startswith(edge_path)


def test_invalid_citation_schema_names_yaml_path() -> None:
    schemas = [{"id": "contact", "variables": [{"name": "a", "type": "COLOUR"}]}]
    error = rejected(
        definitions_document(definitions_account(citation_schemas=schemas))
    )

    assert error.reason == "INVALID_CITATION_SCHEMA"
    assert "accounts[0].citation_schemas[0].variables[0].type" in error.message


def test_outcome_syntax_error_names_yaml_path() -> None:
    outcomes = [{"id": "summary", "script": "return {;"}]
    error = rejected(definitions_document(definitions_account(outcomes=outcomes)))

    assert error.reason == "INVALID_OUTCOME_SCRIPT"
    assert [violation.field for violation in error.violations] == [
        "accounts[0].outcomes[0].script"
    ]


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        (
            {
                "pathways": [
                    {
                        "id": "booking",
                        "versions": [
                            {"version": "1", "definition": PATHWAY_DEFINITION}
                        ],
                    },
                    {
                        "id": "booking",
                        "versions": [
                            {"version": "2", "definition": PATHWAY_DEFINITION}
                        ],
                    },
                ]
            },
            "accounts[0].pathways[1]: pathway 'booking' is already listed",
        ),
        (
            {
                "pathways": [
                    {
                        "id": "booking",
                        "versions": [
                            {"version": "1", "definition": PATHWAY_DEFINITION},
                            {"version": "1", "definition": PATHWAY_DEFINITION},
                        ],
                    }
                ]
            },
            "accounts[0].pathways[0].versions[1]: version '1' is already listed",
        ),
        (
            {
                "outcomes": [
                    {"id": "a", "script": "return 1;"},
                    {"id": "a", "script": "return 2;"},
                ]
            },
            "accounts[0].outcomes[1]: outcome 'a' is already listed",
        ),
        (
            {
                "citation_schemas": [
                    {
                        "id": "c",
                        "variables": [
                            {
                                "name": "a",
                                "type": "STRING",
                                "rules": [{"preset": "EMAIL"}],
                            }
                        ],
                    },
                    {
                        "id": "c",
                        "variables": [
                            {
                                "name": "b",
                                "type": "STRING",
                                "rules": [{"preset": "EMAIL"}],
                            }
                        ],
                    },
                ]
            },
            "accounts[0].citation_schemas[1]: citation schema 'c' is already listed",
        ),
    ],
)
def test_duplicate_definition_rejected(
    sections: dict[str, object], fragment: str
) -> None:
    error = rejected(definitions_document(definitions_account(**sections)))
    assert error.reason == "INVALID_CONFIG"
    assert fragment in error.message


def test_same_definition_ids_in_two_accounts() -> None:
    text = definitions_document(definitions_account(), definitions_account(id="globex"))
    accounts = parse_config(text).accounts
    assert [account.pathways[0].id for account in accounts] == ["booking", "booking"]
    assert [account.outcomes[0].id for account in accounts] == ["summary", "summary"]
