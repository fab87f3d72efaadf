"""The human annotation station: people answer SPAL's support-pair questions in a browser while training runs.

- :func:`human_select` (training side): the human counterpart of :func:`spal.active.select_support_pairs`;
  :func:`make_human_select` binds it to a training config and serves the page in the training process.
- :func:`create_app` / :func:`serve` / :func:`annotate_main` (``spal annotate``): the token-protected web page
  and API, which only read and append files under ``<logs_dir>/annotation/``.
"""

from spal.annotation.human import HumanSelect, make_human_select
from spal.annotation.server import annotate_main, create_app, serve
from spal.annotation.session import human_select

__all__ = [
    "HumanSelect",
    "annotate_main",
    "create_app",
    "human_select",
    "make_human_select",
    "serve",
]
