"""``lmzip explain FILE``: where the bits go, token by token.

The model reads the file exactly as the compressor would code it as one segment, and every
token gets the bits the range coder spends on it (see ``analysis``). Output: the text as a
heatmap on the terminal followed by a summary with the most expensive tokens, and with
``--html OUT.html`` a self-contained page with hover tooltips showing the model's guesses.

* ``analysis``: the ``Explanation`` of a file (``explain``), tokens aligned to bytes, ``most_expensive``
* ``visible``: bytes and tokens as readable, escaped text (shared by the terminal and the page)
* ``terminal``: the terminal heatmap and summary lines
* ``html``: the page; its style and script are the package files ``page.css`` and ``page.js``
* ``command``: the click command ``explain_command`` (cli.py registers it as ``lmzip explain``)

Heavy modules (torch, numpy) are imported only when the command runs.
"""

from __future__ import annotations

from .analysis import GUESSES, Explanation, explain, most_expensive
from .command import explain_command
from .html import HIST_MAX_BITS, heat_rgb, histogram_svg, render_html
from .terminal import adaptation_lines, render_terminal, summary_lines
from .visible import token_label

__all__ = ["Explanation", "explain", "explain_command", "render_html", "render_terminal", "summary_lines",
           "histogram_svg", "token_label", "heat_rgb", "most_expensive", "adaptation_lines",
           "GUESSES", "HIST_MAX_BITS"]
