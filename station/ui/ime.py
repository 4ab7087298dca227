"""The on-screen pinyin keyboard's candidates as JSON (``station.ime`` holds the index and says why an endpoint).

``GET /ime/candidates?py=yanglaojin&field=text&page=0`` answers
``{"py": ..., "syllables": [...], "candidates": [{"text": "养老金", "used": 10}, ...], "page": 0, "more": true}``;
``used`` is how many of the typed letters a candidate uses up (the rest stays to be typed). Bad input gets a 400
with a message in the person's language, never a 500.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from station import ime
from station.errors import N_, StationError
from station.ui.common import login_required, translate_error

bp = Blueprint("ime", __name__, url_prefix="/ime")


class BadPinyin(StationError):
    code = "bad_pinyin"
    template = N_("Pinyin is 1 to %(max)d letters a to z (and ' between syllables).")


class BadCandidateRequest(StationError):
    code = "bad_candidate_request"
    template = N_("The keyboard asked for candidates it cannot have. Type the pinyin again.")


@bp.get("/candidates")
@login_required
def candidates():
    """One page of candidates for typed pinyin, for a name field or free text."""
    letters = request.args.get("py", "")
    field = request.args.get("field", "text")
    page = request.args.get("page", "0")
    try:
        if not (0 < len(letters) <= ime.MAX_PINYIN and ime.PINYIN_RE.fullmatch(letters)):
            raise BadPinyin(max=ime.MAX_PINYIN)
        if field not in ime.FIELDS or not (page.isascii() and page.isdigit() and int(page) <= ime.MAX_PAGE):
            raise BadCandidateRequest()
    except StationError as err:
        return jsonify(error=translate_error(err)), 400
    found = ime.candidate_index().page(letters, field, int(page))
    return jsonify(
        py=letters,
        syllables=list(found.syllables),
        candidates=[{"text": c.text, "used": c.used} for c in found.candidates],
        page=found.page,
        more=found.more,
    )
