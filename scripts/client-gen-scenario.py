"""The scenario scripts/client-gen drives through the generated Python client: an
API-key profile created, listed and in the health report; an OAuth sign-in against the
stand-in provider, its callback state read back as a typed SignInOutcome while
pending and once succeeded; an agent on the signed-in profile, an objective, a manual
run and its run record (the provider's answer, tokens, the attempt) read back; client
mistakes parsed as the typed ErrorBody."""

import os
import sys
import time

import httpx

from palyra_admin_client.client import AuthenticatedClient
from palyra_admin_client.api.auth_profiles import create_profile, get_profile, health, list_profiles
from palyra_admin_client.api.oauth import bootstrap, callback_state
from palyra_admin_client.api.objectives import (
    create_agent, create_objective, get_agent, get_objective, lifecycle, list_agents, runs,
)
from palyra_admin_client import models


def check(condition, message):
    if not condition:
        print(f"client-gen scenario: {message}", file=sys.stderr)
        sys.exit(1)


client = AuthenticatedClient(base_url=os.environ["PALYRA_URL"], token=os.environ["PALYRA_TOKEN"])

created = create_profile.sync_detailed(
    client=client,
    body=models.CreateProfileRequest.from_dict({
        "provider": "openai",
        "profile_name": "Generated",
        "profile_id": "openai.generated",
        "credential": {"type": "api_key", "api_key": os.environ["PALYRA_API_KEY"]},
    }),
)
check(created.status_code == 200, f"create_profile answered {created.status_code}: {created.content!r}")
check(isinstance(created.parsed, models.AuthProfile), f"create_profile parsed {type(created.parsed)}")
check("sk-generated" not in created.content.decode(), "the key came back")

page = list_profiles.sync(client=client)
check(isinstance(page, models.ProfilePage), f"list_profiles parsed {type(page)}")
check(any(p.profile_id == "openai.generated" for p in page.items), "the profile is listed")

report = health.sync(client=client)
check(isinstance(report, models.AuthHealthReport), f"health parsed {type(report)}")
check(any(p.profile_id == "openai.generated" for p in report.profiles), "the profile has a health entry")

started = bootstrap.sync(
    "custom:acme",
    client=client,
    body=models.BootstrapRequest.from_dict({"profile_name": "Acme", "profile_id": "acme.generated"}),
)
check(isinstance(started, models.SignInStarted), f"bootstrap parsed {type(started)}")
check("prompt=consent" in started.authorization_url, "offline_access asks for consent")

outcome = callback_state.sync("custom:acme", client=client, attempt_id=started.attempt_id)
check(isinstance(outcome, models.SignInOutcome), f"callback_state parsed {type(outcome)}")
check(outcome.state == models.SignInOutcomeState.PENDING, f"state {outcome.state}")
check(outcome.attempt_id == started.attempt_id and outcome.provider == "custom:acme", "the attempt")

missing = callback_state.sync_detailed("custom:acme", client=client, attempt_id="att-none")
check(missing.status_code == 404, f"an unknown attempt answered {missing.status_code}")
check(isinstance(missing.parsed, models.ErrorBody), f"the 404 parsed {type(missing.parsed)}")


# The browser's part of the sign-in: the provider redirects to the daemon's callback,
# which redeems the code (with the PKCE verifier) and checks the token.
authorize = httpx.get(started.authorization_url, follow_redirects=False)
check(authorize.status_code == 302, f"the provider's /authorize answered {authorize.status_code}")
page = httpx.get(authorize.headers["location"], follow_redirects=False)
check(page.status_code == 200, f"the callback answered {page.status_code}: {page.text[:300]}")
done = callback_state.sync("custom:acme", client=client, attempt_id=started.attempt_id)
check(done.state == models.SignInOutcomeState.SUCCEEDED, f"after the callback: {done.state} {done.reason}")
check(done.profile_id == "acme.generated", f"signed in as {done.profile_id}")
signed_in = get_profile.sync("acme.generated", client=client)
check(isinstance(signed_in, models.AuthProfile), f"get_profile parsed {type(signed_in)}")
check("generated-access-" not in get_profile.sync_detailed("acme.generated", client=client).content.decode(),
      "the access token came back")

agent = create_agent.sync(
    client=client,
    body=models.NewAgent.from_dict({
        "agent_id": "generated-agent",
        "display_name": "Generated agent",
        "default_model_profile": "acme.generated",
        "model": "gpt-generated",
    }),
)
check(isinstance(agent, models.AgentRecord), f"create_agent parsed {type(agent)}")
check(get_agent.sync("generated-agent", client=client).agent_id == "generated-agent", "get_agent")
agents = list_agents.sync(client=client)
check(any(a.agent_id == "generated-agent" for a in agents.items), "the agent is listed")
taken = create_agent.sync_detailed(
    client=client,
    body=models.NewAgent.from_dict({"agent_id": "generated-agent", "model": "gpt-generated"}),
)
check(taken.status_code == 409 and isinstance(taken.parsed, models.ErrorBody), f"a second agent: {taken.status_code}")

objective = create_objective.sync(
    client=client,
    body=models.NewObjective.from_dict({
        "objective_id": "generated-objective",
        "agent_id": "generated-agent",
        "name": "Generated objective",
        "prompt": "say hello",
        "activate": True,
    }),
)
check(isinstance(objective, models.ObjectiveRecord), f"create_objective parsed {type(objective)}")
fired = lifecycle.sync(
    "generated-objective", client=client, body=models.LifecycleRequest.from_dict({"action": "fire"}),
)
check(isinstance(fired, models.ObjectiveRecord), f"lifecycle parsed {type(fired)}")

run = None
for _ in range(300):
    page = runs.sync("generated-objective", client=client)
    check(isinstance(page, models.RunPage), f"runs parsed {type(page)}")
    if page.items and page.items[0].status not in (models.RunStatus.QUEUED, models.RunStatus.RUNNING):
        run = page.items[0]
        break
    time.sleep(0.1)
check(run is not None, "the manual run did not finish")
check(run.status == models.RunStatus.SUCCEEDED, f"the run: {run.status} {run.error}")
check(run.trigger == models.RunTrigger.MANUAL, f"trigger {run.trigger}")
check(run.output == "echo: say hello", f"output {run.output!r}")
check(run.tokens == 12 and run.prompt_tokens == 7 and run.completion_tokens == 5, f"tokens {run.tokens}")
check(len(run.attempts) == 1 and run.attempts[0].profile_id == "acme.generated", "the attempt on the OAuth profile")
usage = get_objective.sync("generated-objective", client=client)
check(usage.usage.runs == 1 and usage.usage.tokens == 12, f"the objective's usage {usage.usage}")
print("client-gen scenario: ok")
