"""Short text describing a user: a reviewer's name, or a phrase from MovieLens demographics."""

_GENDERS = {"m": "male", "f": "female"}
_NO_OCCUPATION = {"", "other", "none"}


def amazon_user_desc(*, reviewer_name: str, reviewer_id: str) -> str:
    """The reviewer's name, falling back to the raw reviewer id."""
    name = " ".join((reviewer_name or "").split())
    return name or reviewer_id


def demographics_user_desc(*, age: str = "", gender: str = "", occupation: str = "", fallback: str) -> str:
    """'24-year-old male technician' from MovieLens fields; `fallback` when all are empty.

    An occupation of 'other' or 'none' says nothing, so it is left out.
    """
    parts = []
    age = age.strip()
    if age:
        parts.append(f"{age}-year-old")
    gender = gender.strip().lower()
    if gender:
        parts.append(_GENDERS.get(gender, gender))
    occupation = occupation.strip().lower()
    if occupation not in _NO_OCCUPATION:
        parts.append(occupation)
    return " ".join(parts) or fallback
