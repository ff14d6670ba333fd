"""A blocking script with the synchronous wrapper: announce a deploy, then print the last five
messages of the channel.

    python notify.py --channel ops "deployed 1.2"
"""

from __future__ import annotations

import argparse
import os

import switchboard


def notify(url: str, api_key: str, channel: str, text: str) -> list[switchboard.Message]:
    with switchboard.sync.connect(url, api_key, channel, f"notify-{os.getpid()}", presence=False) as agent:
        ack = agent.send("deploy", {"text": text})
        print(f"stored at offset {ack.offset}")
        page = agent.receive(direction="backward", limit=5)
        for m in reversed(page.messages):
            print(f"[{m.offset}] {m.sender} {m.type}: {m.data}")
        return page.messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "ws://127.0.0.1:7400"))
    parser.add_argument("--channel", default="ops")
    parser.add_argument("text")
    args = parser.parse_args()
    notify(args.url, os.environ["SWITCHBOARD_API_KEY"], args.channel, args.text)


if __name__ == "__main__":
    main()
