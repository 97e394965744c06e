"""The web app, ``querysep app``: separate by typing what you want to hear, in a browser.

Needs the ``app`` extra (gradio), imported only when the page is built, so this package
imports without it. :class:`~querysep.app.service.SeparationService` does the work of one
request and knows nothing of the web; :func:`~querysep.app.page.build_page` is the page
and its ``separate`` API endpoint; :func:`~querysep.app.server.serve` runs it.
"""

from .server import serve
from .service import AppConfig, SeparationResult, SeparationService
from .workspace import Workspace

__all__ = ["AppConfig", "SeparationResult", "SeparationService", "Workspace", "serve"]
