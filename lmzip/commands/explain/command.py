"""The ``lmzip explain`` command (click): reads the input, runs the analysis, prints or writes the result.

cli.py registers it with every ``lmzip`` run, so this module and those it imports load nothing
heavy (numpy, torch, the model) until the command itself runs.
"""

from __future__ import annotations

import contextlib
import os

import click

from .analysis import explain
from .html import render_html
from .terminal import render_terminal
from .visible import _safe_text


@contextlib.contextmanager
def _nothing():
    yield None


def _want_color(choice: bool | None, stream) -> bool:
    if choice is not None:
        return choice
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError, OSError):
        return False


@click.command("explain", epilog="The explanation codes the whole file as one segment with the compressor's "
               "windows; its total matches the LM payload of `lmzip compress --segment-size` > file size to within "
               "the range coder's overhead.")
@click.argument("file", metavar="FILE")
@click.option("--model", metavar="ID|DIR", help="Registry id or model directory. [default: the default model]")
@click.option("--device", default="cpu", show_default=True, metavar="NAME", help="Torch device for the model: cpu, cuda, ...")
@click.option("--window", type=click.IntRange(min=1), metavar="N", help="Tokens the model sees at most. [default: 4096]")
@click.option("--overlap", type=click.IntRange(min=0), metavar="N",
              help="Tokens re-read as context at each new window. [default: 1024]")
@click.option("--adapt/--no-adapt", default=True, show_default=True,
              help="Explain with the adaptive predictor (as compression does) or the model alone.")
@click.option("--html", "html_out", metavar="OUT.html", help="Also write a self-contained HTML page (heatmap, tooltips, histogram); '-': to standard output instead of the text.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, metavar="N",
              help="How many of the most expensive tokens to list.")
@click.option("--color/--no-color", default=None,
              help="Colour the text by cost. [default: when standard output is a terminal and NO_COLOR is unset]")
@click.option("-q", "--quiet", count=True, help="-q: summary only, no text; -qq: print nothing (with --html).")
@click.option("-v", "--verbose", count=True, help="Also list the model's windows with their costs.")
@click.pass_context
def explain_command(ctx, file, model, device, window, overlap, adapt, html_out, top, color, quiet, verbose):
    """Show how many bits each token of FILE costs under the model ('-': standard input).

    The text is printed coloured by cost (dim: predictable, red: surprising), followed by a
    summary (bits/byte, bits/token, the payload an actual compression produces) and the most
    expensive tokens with the model's top guesses. With --html, the same as one HTML page.
    """
    from .. import cmdline as cl
    from ...resources import check_device
    from ..progress import Progress

    level = (ctx.obj or {}).get("verbosity", 0) + verbose - quiet  # 0 normal, -1 summary only, -2 nothing
    shown = cl.display(file)
    use_color = _want_color(color, cl.stdout())

    def work(src: str) -> None:
        to_file = html_out is not None and html_out != cl.STDIO
        if to_file:
            cl.check_dest(src, html_out, True)  # not a directory, not the input itself
        with cl.Input(src, compressed=False) as inp:  # the analysis needs the whole input
            data = inp.file.read()
        check_device(device)
        from ...api import Compressor

        compressor = Compressor(model, device=device, window=window, overlap=overlap, fallback=False, adapt=adapt)
        name = shown if src == cl.STDIO else os.path.basename(src)
        # --html FILE: written atomically (temporary file renamed into place); --html -: to stdout, alone.
        with cl.Output(html_out if to_file else None, True, None) if html_out is not None else _nothing() as output:
            with Progress(len(data), shown, enabled=None if level >= 0 else False) as progress:
                exp = explain(compressor.model, data, compressor.params, name=name, progress=progress)
            if output is not None:
                output.write(render_html(exp, top=top).encode("utf-8"))
                output.commit()
        if level <= -2 or html_out == cl.STDIO:
            return
        text = render_terminal(exp, color=use_color, top=top, text=level >= 0, verbose=level >= 1)
        if to_file:
            text += f"\nHTML page: {_safe_text(html_out)}\n"
        try:
            click.echo(text, nl=False, color=use_color)
        except BrokenPipeError:
            cl.silence_stdout()
            raise

    cl.for_each(ctx, [file], work)
