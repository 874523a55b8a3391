"""slack-sdk, unchanged, against the Slack emulator."""
import pytest
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError


@pytest.fixture(scope="module")
def slack(sim):
    return WebClient(token=sim.info["slack"]["token"], base_url=sim.info["slack"]["url"])


def test_auth(sim, slack):
    assert slack.auth_test()["team_id"] == "TSEAM0001"
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=sim.info["slack"]["url"]).auth_test()
    assert err.value.response["error"] == "invalid_auth"


def test_bridge_channel_and_message(slack):
    created = slack.conversations_create(name="inc0010001-bridge")
    channel = created["channel"]
    assert channel["name"] == "inc0010001-bridge" and channel["id"].startswith("C")

    posted = slack.chat_postMessage(channel=channel["id"], text="Sev-1 on Acme: <https://sf/500|Case> ⇄ <https://sn/inc|INC0010001>")
    assert posted["ok"] and posted["channel"] == channel["id"] and posted["message"]["text"].startswith("Sev-1")

    by_name = slack.chat_postMessage(channel="#inc0010001-bridge", text="second")
    assert by_name["channel"] == channel["id"]

    history = slack.conversations_history(channel=channel["id"])["messages"]
    assert [m["text"] for m in history][:2] == ["second", posted["message"]["text"]]


def test_slack_errors(slack):
    slack.conversations_create(name="taken-name")
    with pytest.raises(SlackApiError) as err:
        slack.conversations_create(name="taken-name")
    assert err.value.response["error"] == "name_taken"
    with pytest.raises(SlackApiError) as err:
        slack.conversations_create(name="Has Spaces")
    assert err.value.response["error"] == "invalid_name_specials"
    with pytest.raises(SlackApiError) as err:
        slack.chat_postMessage(channel="C0NOPE", text="x")
    assert err.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning, match="text"):
        slack.chat_postMessage(channel="general", text="")
    assert err.value.response["error"] == "no_text"


def test_incoming_webhook(sim, slack):
    hook = WebhookClient(sim.info["slack"]["webhook"])
    response = hook.send(text="backlog alert: 12 dead letters")
    assert response.status_code == 200 and response.body == "ok"
    history = slack.conversations_history(channel="seam-alerts")["messages"]
    assert history[0]["text"] == "backlog alert: 12 dead letters"

    bad = WebhookClient(sim.info["slack"]["webhook"].replace("seam-alerts-webhook", "nope")).send(text="x")
    assert bad.status_code == 404 and bad.body == "no_service"
