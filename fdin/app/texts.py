"""Every sentence the app shows that is not computed: the notice, the disclaimers, the API help and
the "Models & API" table built from the model cards. No gradio here."""

from __future__ import annotations

import html
import json
from pathlib import Path

from fdin.app.settings import MODEL_ENV, model_source, resolved_model_dir
from fdin.errors import FdinError
from fdin.labels import SYNTHETIC_WEIGHTS_NOTE

TITLE = "fdin: facial dynamics and relation traits"
INTRO = ("# fdin: facial dynamics and relation traits\n"
         "Gender and age from how a face **moves** (FDIN, Kim & Ro, ECCV 2018) with the region pairs "
         "that drove the estimate; interpersonal relation traits between faces (Zhang et al., ICCV 2015).")
CONSENT = "I understand, and the people shown agreed to have their faces analysed."
GENERIC_ERROR = "Something went wrong processing this file. Please try another file."
RATE_LIMITED = "Too many requests from your connection. Please wait a minute and try again."
UNKNOWN_TRAIT = "Unknown trait: please pick one from the list."
ARGUMENT_TOO_LONG = "A text argument is too long; please check the request."

NOTICE = (
    "**What happens to your media.** The video or photos you submit are analysed on this server to "
    "estimate *apparent* attributes (gender, age, expression, head pose) and relation traits. Nothing is "
    "stored: uploads and results are deleted from the server within 15 minutes (and when the app stops), "
    "and nothing is logged about the faces. Only use faces of people who agreed. **The shipped demo models:** "
    f"{SYNTHETIC_WEIGHTS_NOTE} Not for identification or decisions about people."
)

DISCLAIMERS = f"""\
### Disclaimers
- Estimates are of **apparent** attributes from pixels and motion. They say nothing about anyone's
  identity, inner state or how they describe themselves.
- **Gender is estimated as a binary label** because that is how the training data are labelled; this is a
  limitation of the data, not a statement about gender identity.
- Accuracy differs across groups of people, lighting and cameras. **Do not use fdin for decisions about
  people** (hiring, access, policing, scoring...) or to identify anyone.
- Expressions are *perceived* expressions, not emotions.
- **The demo weights:** {SYNTHETIC_WEIGHTS_NOTE}
- Nothing is stored: uploads, results and working files are deleted from the server within 15 minutes
  of being written, and all of them when the app stops; no faces, file names or results are logged.
"""

API_MARKDOWN = """\
### Calling the API
Every tab is an API endpoint (`/detect_faces`, `/analyze_video`, `/relate_photos`):

```python
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")          # or "<org>/<space>" on Hugging Face
faces = client.predict(handle_file("photo.jpg"), api_name="/detect_faces")[0]   # the CLI faces JSON
analysis = client.predict(handle_file("clip.mp4"), api_name="/analyze_video")[0]   # the CLI's analyze JSON
relation = client.predict(handle_file("a.jpg"), handle_file("b.jpg"), api_name="/relate_photos")[0]
group = client.predict(handle_file("group.jpg"), None, "warm", api_name="/relate_photos")[0]
```
`/analyze_video` returns, in order: the JSON of `fdin analyze`, a summary, the annotated clip,
a keyframe with the top region relations, the gender and age importance heatmaps (Plotly), the region
dynamics plot and the JSON file. `/relate_photos` returns the JSON of `fdin relate`, the
annotated image, the per-face table, the trait chart and (3+ faces) the relation matrix for `trait`.
`/detect_faces` returns the JSON of `fdin faces` and the annotated photo.
Limits: files up to 50 MB (200 MB per client per 10 minutes), photos analysed at up to 2560 px on their
longer side (larger ones are downscaled first; coordinates refer to the downscaled photo), the first 20 s
of a video, one request at a time with a short queue (direct REST calls outside the queue are refused).
"""

FALLBACK_TRAITS = ["dominant", "competitive", "trusting", "warm", "friendly", "attached", "demonstrative",
                   "assured"]


def trait_names() -> list[str]:
    """Trait names from the relation model's config (no torch import), else the standard eight."""
    try:
        config = json.loads((Path(resolved_model_dir("relation")) / "config.json").read_text())
        return list(config["traits"])
    except (FdinError, OSError, KeyError, ValueError):
        return list(FALLBACK_TRAITS)


def models_markdown() -> str:
    """Model cards (from each model's config.json/README), sources in use and API usage."""
    from fdin.weights import card_from_config

    lines = ["### Models in use", "",
             "| role | source | trained on | generated data | licence |", "|---|---|---|---|---|"]
    cards = []
    for role in MODEL_ENV:
        source, revision = model_source(role)
        shown = f"{source}@{revision[:10]}" if revision else f"weights/{source}" if "/" not in source else source
        try:
            folder = Path(resolved_model_dir(role))
            card = card_from_config(json.loads((folder / "config.json").read_text()))
            readme = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
        except (FdinError, OSError, ValueError) as error:
            lines.append(f"| {role} | `{shown}` | not available: {html.escape(str(error))} | | |")
            continue
        lines.append(f"| {role} | `{shown}` | {html.escape(str(card.get('trained_on')))} | "
                     f"{'yes' if card.get('synthetic_training_data') else 'no'} | {card.get('licence')} |")
        cards.append((role, readme))
    lines += ["", "Set `FDIN_GENDER_REPO`, `FDIN_AGE_REPO`, `FDIN_EXPRESSION_REPO`, `FDIN_RELATION_REPO` "
              "(with `*_REVISION` = a 40-hex commit) to use Hub models; they must already be in the local "
              "Hugging Face cache (fdin never downloads at run time).", "",
              "**Face detection and landmarks** come from `fdin.perception`'s default backend: yuface "
              "(libfacedetection, BSD-3), dlib's 68-point shape predictor (trained on iBUG 300-W, whose terms "
              "exclude commercial use) and the Cydral age/gender networks (CC0); or insightface buffalo_l "
              "(non-commercial) when provided on disk.", ""]
    for role, readme in cards:
        body = readme.split("---", 2)[-1].strip() if readme.startswith("---") else readme.strip()
        lines += [f"<details><summary>Model card: {role}</summary>", "", body, "", "</details>", ""]
    return "\n".join(lines)
