"""Reports: HTML for people, JSON / Markdown / JUnit for CI."""
