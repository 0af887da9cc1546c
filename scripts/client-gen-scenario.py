"""The scenario scripts/client-gen drives through the generated Python client: an
API-key profile created, listed and in the health report; an OAuth sign-in started
and its callback state read back as a typed SignInOutcome; a client mistake parsed
as the typed ErrorBody."""

import os
import sys

from palyra_admin_client.client import AuthenticatedClient
from palyra_admin_client.api.auth_profiles import create_profile, health, list_profiles
from palyra_admin_client.api.oauth import bootstrap, callback_state
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
        "credential": {"type": "api_key", "api_key": "sk-generated-client-0123456789"},
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

print("client-gen scenario: ok")
