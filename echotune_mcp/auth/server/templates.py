"""Server-rendered pages of the login flow: plain HTML forms that work without JavaScript.

Every value is HTML-escaped; the forms post to this server (no credentials in URLs) and carry a CSRF token
that must match the cookie set with the page.
"""

from __future__ import annotations

from html import escape

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}"
          "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}"
          "button{margin-top:1rem;padding:.5rem 1rem}.error{color:#a00}.muted{color:#666;font-size:.9rem}")


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            f"content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title><style>{_STYLE}</style>"
            f"</head><body><h1>{escape(title)}</h1>{body}</body></html>")


def _who(client_name: str, client_id: str, resource: str, scope: str) -> str:
    return (f"<p><strong>{escape(client_name)}</strong> <span class=\"muted\">({escape(client_id)})</span> asks to "
            f"use <strong>{escape(resource)}</strong> as you, with: <code>{escape(scope)}</code>.</p>")


def _hidden(txn: str, csrf: str) -> str:
    return (f"<input type=\"hidden\" name=\"txn\" value=\"{escape(txn)}\">"
            f"<input type=\"hidden\" name=\"csrf\" value=\"{escape(csrf)}\">")


def login_page(*, txn: str, csrf: str, client_name: str, client_id: str, resource: str, scope: str,
               error: str | None = None, username: str = "") -> str:
    err = f"<p class=\"error\" role=\"alert\">{escape(error)}</p>" if error else ""
    return page("Sign in to EchoTune", (
        f"{_who(client_name, client_id, resource, scope)}{err}"
        f"<form method=\"post\" action=\"/login\">{_hidden(txn, csrf)}"
        f"<label for=\"username\">Username</label><input id=\"username\" name=\"username\" autocomplete=\"username\" "
        f"required value=\"{escape(username)}\">"
        "<label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" "
        "autocomplete=\"current-password\" required>"
        "<button type=\"submit\" name=\"action\" value=\"login\">Sign in and allow</button> "
        "<button type=\"submit\" name=\"action\" value=\"deny\" formnovalidate>Deny</button></form>"))


def otp_page(*, txn: str, csrf: str, client_name: str, client_id: str, resource: str, scope: str,
             error: str | None = None) -> str:
    err = f"<p class=\"error\" role=\"alert\">{escape(error)}</p>" if error else ""
    return page("Your one-time code", (
        f"{_who(client_name, client_id, resource, scope)}{err}"
        f"<form method=\"post\" action=\"/login/otp\">{_hidden(txn, csrf)}"
        "<label for=\"code\">6-digit code from your authenticator app</label><input id=\"code\" name=\"code\" "
        "inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]{6,7}\" required>"
        "<button type=\"submit\">Verify</button></form>"))


def error_page(message: str) -> str:
    return page("Cannot continue", f"<p class=\"error\">{escape(message)}</p>"
                "<p class=\"muted\">Go back to the application and start signing in again.</p>")
