"""The stream sides of the adapters between OpenAI's own shapes (gateway/adapters/*.yaml holds their
whole-body sides; gateway.translate.adapters pairs the two under one name).

A stream side turns the items of the shape inside (chat chunks, Responses events) into items of the shape
the client asked for, event by event, and may add closing items once the stream ends (`finish`).
"""

from __future__ import annotations

from typing import Any

from gateway.translate.filters import chat_finish_reason, safe_call_id
from gateway.translate.stream import StreamFailed
from gateway.translate.wire_operation import WireOperation
from gateway.usage import Usage

Item = dict[str, Any]


class StreamSide:
    """One stream's converter; made per request from the adapter, the body at its level and the variables."""

    def __init__(self, adapter: WireOperation, body: dict[str, Any], variables: dict[str, Any]) -> None:
        raise NotImplementedError

    def convert(self, item: Item) -> list[Item]:
        raise NotImplementedError

    def finish(self, usage: Usage | None) -> list[Item]:
        return []


class ChatToText(StreamSide):
    """chat.completion.chunk → text_completion chunks (/v1/text/generations on a chat model)."""

    def __init__(self, adapter: WireOperation, body: dict[str, Any], variables: dict[str, Any]) -> None:
        self._id = "cmpl-" + variables["rid"]
        self._created = variables["created"]
        self._model = variables["model"]

    def convert(self, chunk: Item) -> list[Item]:
        out = []
        for c in chunk.get("choices") or ():
            delta = c.get("delta") or {}
            text = delta.get("content") or ""
            if text or c.get("finish_reason"):
                out.append({"id": self._id, "object": "text_completion", "created": self._created, "model": self._model,
                            "choices": [{"text": text, "index": c.get("index", 0), "logprobs": None,
                                         "finish_reason": c.get("finish_reason")}]})
        return out


class ChatToResponses(StreamSide):
    """chat.completion.chunk → the Responses event stream (/v1/responses on a chat-only provider).
    The final `response.completed` carries the same Response object the non-streaming adapter builds."""

    def __init__(self, adapter: WireOperation, body: dict[str, Any], variables: dict[str, Any]) -> None:
        self._adapter = adapter
        self._body = body
        self._vars = variables
        self._rid = variables["rid"]
        self._text: list[str] = []
        self._message_index: int | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._next_output = 0
        self._finish = "stop"
        self._started = False

    def _response(self, status: str, usage: Usage | None, content: str | None = None,
                  calls: list[dict[str, Any]] | None = None) -> Item:
        chat = {"choices": [{"index": 0, "finish_reason": self._finish,
                             "message": {"role": "assistant", "content": content,
                                         **({"tool_calls": calls} if calls else {})}}]}
        doc, _ = self._adapter.translate_response(chat, self._body, self._vars, usage or Usage())
        doc["status"] = status
        if status == "in_progress":
            doc["output"] = []
            doc.pop("usage", None)
        return doc

    def convert(self, chunk: Item) -> list[Item]:
        out: list[Item] = []
        if not self._started:
            self._started = True
            base = self._response("in_progress", None)
            out += [{"type": "response.created", "response": base}, {"type": "response.in_progress", "response": base}]
        for c in chunk.get("choices") or ():
            delta = c.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._message_index is None:
                    self._message_index = self._next_output
                    self._next_output += 1
                    out += [{"type": "response.output_item.added", "output_index": self._message_index,
                             "item": {"type": "message", "id": f"msg_{self._rid}", "status": "in_progress",
                                      "role": "assistant", "content": []}},
                            {"type": "response.content_part.added", "item_id": f"msg_{self._rid}",
                             "output_index": self._message_index, "content_index": 0,
                             "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}]
                self._text.append(text)
                out.append({"type": "response.output_text.delta", "item_id": f"msg_{self._rid}",
                            "output_index": self._message_index, "content_index": 0, "delta": text, "logprobs": []})
            for call in delta.get("tool_calls") or ():
                idx = call.get("index", 0)
                fn = call.get("function") or {}
                state = self._calls.get(idx)
                if state is None:
                    state = self._calls[idx] = {"id": call.get("id") or f"call_{self._rid}_{idx}", "name": fn.get("name", ""),
                                                "args": [], "output_index": self._next_output}
                    self._next_output += 1
                    out.append({"type": "response.output_item.added", "output_index": state["output_index"],
                                "item": self._call_item(state, "in_progress")})
                if fn.get("arguments"):
                    state["args"].append(fn["arguments"])
                    out.append({"type": "response.function_call_arguments.delta", "item_id": self._item_id(state),
                                "output_index": state["output_index"], "delta": fn["arguments"]})
            if c.get("finish_reason"):
                self._finish = c["finish_reason"]
        return out

    @staticmethod
    def _item_id(state: dict[str, Any]) -> str:
        return "fc_" + state["id"].split(":ts:", 1)[0]

    def _call_item(self, state: dict[str, Any], status: str) -> Item:
        return {"type": "function_call", "id": self._item_id(state), "call_id": state["id"], "name": state["name"],
                "arguments": "".join(state["args"]), "status": status}

    def finish(self, usage: Usage | None) -> list[Item]:
        out: list[Item] = []
        text = "".join(self._text)
        if self._message_index is not None:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out += [{"type": "response.output_text.done", "item_id": f"msg_{self._rid}", "output_index": self._message_index,
                     "content_index": 0, "text": text, "logprobs": []},
                    {"type": "response.content_part.done", "item_id": f"msg_{self._rid}",
                     "output_index": self._message_index, "content_index": 0, "part": part},
                    {"type": "response.output_item.done", "output_index": self._message_index,
                     "item": {"type": "message", "id": f"msg_{self._rid}", "status": "completed", "role": "assistant",
                              "content": [part]}}]
        calls = []
        for state in self._calls.values():
            out += [{"type": "response.function_call_arguments.done", "item_id": self._item_id(state),
                     "output_index": state["output_index"], "arguments": "".join(state["args"]), "name": state["name"]},
                    {"type": "response.output_item.done", "output_index": state["output_index"],
                     "item": self._call_item(state, "completed")}]
            calls.append({"id": state["id"], "type": "function",
                          "function": {"name": state["name"], "arguments": "".join(state["args"])}})
        incomplete = self._finish in ("length", "content_filter")
        final = self._response("incomplete" if incomplete else "completed", usage, text or None, calls)
        out.append({"type": "response.incomplete" if incomplete else "response.completed", "response": final})
        return out


class ResponsesToChat(StreamSide):
    """Responses events → chat.completion.chunk (/v1/chat/completions on a Responses-only model)."""

    def __init__(self, adapter: WireOperation, body: dict[str, Any], variables: dict[str, Any]) -> None:
        self._id = "chatcmpl-" + variables["rid"]
        self._created = variables["created"]
        self._model = variables["model"]
        self._calls: dict[str, int] = {}
        self._started = False

    def _chunk(self, delta: Item, finish: str | None = None) -> Item:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def convert(self, event: Item) -> list[Item]:
        kind = event.get("type")
        out: list[Item] = []
        if not self._started and kind in ("response.created", "response.output_text.delta", "response.output_item.added"):
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if kind == "response.output_text.delta":
            out.append(self._chunk({"content": event.get("delta", "")}))
        elif kind == "response.output_item.added" and (event.get("item") or {}).get("type") == "function_call":
            item = event["item"]
            index = self._calls[item.get("id", "")] = len(self._calls)
            out.append(self._chunk({"tool_calls": [{"index": index, "id": item.get("call_id"), "type": "function",
                                                    "function": {"name": item.get("name"), "arguments": ""}}]}))
        elif kind == "response.function_call_arguments.delta":
            index = self._calls.get(event.get("item_id", ""), 0)
            out.append(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": event.get("delta", "")}}]}))
        elif kind in ("response.completed", "response.incomplete"):
            # the same rule as the adapter's whole-body side (gateway/adapters/chat_via_responses.yaml)
            finish = "tool_calls" if self._calls else chat_finish_reason(event.get("response") or {})
            out.append(self._chunk({}, finish))
        elif kind == "response.failed":
            err = (event.get("response") or {}).get("error") or {}
            raise StreamFailed(err.get("message") or "the provider failed the response")
        return out


class ChatToMessages(StreamSide):
    """chat.completion.chunk → the Messages event stream (/v1/messages on a model whose provider speaks chat):
    message_start and ping, a content block per text run or tool call (start, deltas, stop), then
    message_delta with the stop reason and usage, and message_stop. The Message in message_start and the
    usage and stop reason at the end come from the adapter's whole-body side, so both agree."""

    def __init__(self, adapter: WireOperation, body: dict[str, Any], variables: dict[str, Any]) -> None:
        self._adapter = adapter
        self._body = body
        self._vars = variables
        self._started = False
        self._open: int | None = None        # the content block being streamed
        self._open_is_text = False
        self._next = 0
        self._tools: dict[int, int] = {}     # chat tool call index → content block index
        self._finish = "stop"

    def _message(self, usage: Usage | None, finish: str) -> Item:
        chat = {"choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": None}}]}
        doc, _ = self._adapter.translate_response(chat, self._body, self._vars, usage or Usage())
        return doc

    def _start(self) -> list[Item]:
        self._started = True
        message = self._message(None, "stop")
        message["stop_reason"] = None
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _close(self) -> list[Item]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [{"type": "content_block_stop", "index": index}]

    def _begin(self, block: Item, text: bool) -> list[Item]:
        out = self._close()
        self._open, self._open_is_text = self._next, text
        self._next += 1
        out.append({"type": "content_block_start", "index": self._open, "content_block": block})
        return out

    def convert(self, chunk: Item) -> list[Item]:
        out: list[Item] = [] if self._started else self._start()
        for c in chunk.get("choices") or ():
            delta = c.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._open is None or not self._open_is_text:
                    out += self._begin({"type": "text", "text": "", "citations": None}, True)
                out.append({"type": "content_block_delta", "index": self._open,
                            "delta": {"type": "text_delta", "text": text}})
            for call in delta.get("tool_calls") or ():
                idx = call.get("index", 0)
                fn = call.get("function") or {}
                if idx not in self._tools:
                    call_id = safe_call_id(call.get("id") or f"toolu_{self._vars['rid']}_{idx}")
                    out += self._begin({"type": "tool_use", "id": call_id, "name": fn.get("name") or "", "input": {}}, False)
                    self._tools[idx] = self._next - 1
                if fn.get("arguments"):
                    out.append({"type": "content_block_delta", "index": self._tools[idx],
                                "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]}})
            if c.get("finish_reason"):
                self._finish = c["finish_reason"]
        return out

    def finish(self, usage: Usage | None) -> list[Item]:
        out = ([] if self._started else self._start()) + self._close()
        final = self._message(usage, "tool_calls" if self._tools else self._finish)
        u = final["usage"]
        out.append({"type": "message_delta",
                    "delta": {"stop_reason": final["stop_reason"], "stop_sequence": None},
                    "usage": {"input_tokens": u["input_tokens"], "output_tokens": u["output_tokens"],
                              "cache_creation_input_tokens": u["cache_creation_input_tokens"],
                              "cache_read_input_tokens": u["cache_read_input_tokens"], "server_tool_use": None}})
        out.append({"type": "message_stop"})
        return out


class ChatToGenerate(StreamSide):
    """chat.completion.chunk → GenerateContentResponse chunks (the Gemini API on a model whose provider speaks
    chat): a chunk per text delta; function calls, which Gemini sends whole, once their arguments are complete,
    in the last chunk with the finish reason and usageMetadata (built by the adapter's whole-body side)."""

    def __init__(self, adapter: WireOperation, body: dict[str, Any], variables: dict[str, Any]) -> None:
        self._adapter = adapter
        self._body = body
        self._vars = variables
        self._calls: dict[tuple[int, int], dict[str, Any]] = {}   # (choice, call index) → the call so far
        self._finish: dict[int, str] = {}

    def convert(self, chunk: Item) -> list[Item]:
        out: list[Item] = []
        for c in chunk.get("choices") or ():
            index = c.get("index", 0)
            delta = c.get("delta") or {}
            text = delta.get("content")
            if text:
                out.append({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": index}],
                            "modelVersion": self._vars["model"], "responseId": self._vars["rid"]})
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                state = self._calls.setdefault((index, call.get("index", 0)), {
                    "id": call.get("id") or f"call_{self._vars['rid']}_{len(self._calls)}", "type": "function",
                    "function": {"name": fn.get("name") or "", "arguments": ""}})
                state["function"]["arguments"] += fn.get("arguments") or ""
            if c.get("finish_reason"):
                self._finish[index] = c["finish_reason"]
        return out

    def finish(self, usage: Usage | None) -> list[Item]:
        choices = []
        for index in sorted({i for i, _ in self._calls} | set(self._finish) | {0}):
            calls = [v for (i, _), v in sorted(self._calls.items()) if i == index]
            for call in calls:
                call["function"]["arguments"] = call["function"]["arguments"] or "{}"
            choices.append({"index": index, "finish_reason": self._finish.get(index, "stop"),
                            "message": {"role": "assistant", "content": None, **({"tool_calls": calls} if calls else {})}})
        doc, _ = self._adapter.translate_response({"choices": choices}, self._body, self._vars, usage or Usage())
        return [doc]
