/// The UI's one page: a header with the sections and the place each view renders into.
enum UIPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Trellis</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/app.css">
<script src="/ui/app.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
  <a class="brand" href="#/services">Trellis</a>
  <nav aria-label="Sections">
    <a href="#/services" data-section="services">Services</a>
    <a href="#/trace" data-section="trace">Traces</a>
    <a href="#/kv/" data-section="kv">Key/Value</a>
    <a href="#/intentions" data-section="intentions">Intentions</a>
    <a href="#/acl" data-section="acl">Access</a>
  </nav>
  <div id="who" aria-live="polite"></div>
</header>
<div id="banner" role="alert" hidden></div>
<main id="main" tabindex="-1"><p class="muted">Loading…</p></main>
<noscript><p>This page needs JavaScript; the registry's API is under /v1/.</p></noscript>
</body>
</html>
"""#
}
