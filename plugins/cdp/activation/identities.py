"""The identities a destination can be sent, and how each is normalised and hashed.

Normalisation happens once, in the warehouse (emails trimmed and lower-cased, phones in
E.164: see docs/identity.md); hashing happens here, in the planning query, so each
vendor gets the exact pre-image its matching expects. Meta hashes phone digits without
the '+', Google hashes the E.164 string with it: two kinds, not one kind with a flag.
"""

from __future__ import annotations

from dataclasses import dataclass


def _sha256(expression: str) -> str:
    return f"encode(sha256(convert_to({expression}, 'UTF8')), 'hex')"


@dataclass(frozen=True)
class IdentityKind:
    name: str
    description: str
    # SQL over `member` (activation.act_audience_members) giving the value to send.
    expression: str
    # The identity namespace in bdg_profile_identities it comes from, for destinations
    # that take every value a profile holds rather than its primary one.
    namespace: str
    # SQL over `identity_value` (a normalised value of that namespace).
    value_expression: str = "identity_value"
    is_hashed: bool = False
    # SQL that is null exactly when a member has no value of this kind: the unhashed
    # column, so that the presence test does not hash every value a second time.
    present_when: str = ""

    @property
    def presence(self) -> str:
        return self.present_when or self.expression


IDENTITY_KINDS = {
    kind.name: kind
    for kind in (
        IdentityKind("email", "the normalised email address", "member.email", "email"),
        IdentityKind(
            "email_sha256", "lower-hex SHA-256 of the normalised email",
            "member.email_sha256", "email", _sha256("identity_value"), True,
        ),
        IdentityKind(
            "phone_e164", "the phone number in E.164, with '+'", "member.phone_e164", "phone"
        ),
        IdentityKind(
            "phone_sha256", "lower-hex SHA-256 of the E.164 phone, '+' included (Google)",
            _sha256("member.phone_e164"), "phone", _sha256("identity_value"), True,
            "member.phone_e164",
        ),
        IdentityKind(
            "phone_digits_sha256", "lower-hex SHA-256 of the E.164 digits without '+' (Meta)",
            _sha256("ltrim(member.phone_e164, '+')"), "phone",
            _sha256("ltrim(identity_value, '+')"), True, "member.phone_e164",
        ),
        IdentityKind("crm_id", "the CRM customer id", "member.customer_id", "crm_id"),
        IdentityKind("loyalty_id", "the loyalty card id", "member.loyalty_id", "loyalty_id"),
        IdentityKind("ecid", "a device (Experience Cloud) id; profiles may hold several",
                     "null::text", "ecid"),
    )
}  # fmt: skip
