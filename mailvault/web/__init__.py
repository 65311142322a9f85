"""``mailvault serve``: a local web UI over a vault.

Layers: :mod:`.security` (one-time token, session cookie, Host/Origin checks, CSRF),
:mod:`.mailview` (a message made safe to show: headers, sanitised HTML, attachments),
:mod:`.jobs` (restore and export in a background thread, with progress), :mod:`.app`
(the Starlette routes and Jinja2 pages) and :mod:`.server` (binding and the printed URL).
The web layer only calls the core library; it never touches storage directly.
"""
