"""Builders of store rows for tests (through the store API, as the pipeline writes them)."""


def make_instruction(store, text="Summarise the paragraph below in one sentence.", *, cid=None, position=0,
                     status="kept", reason=None, task_type="A"):
    cid = cid or store.add_completion({"stage": "instruction", "model_id": "m", "params": {},
                                       "prompt_hash": "p", "text": text})
    return store.add_instruction({"text": text, "task_type": task_type, "origin": "instruction_prompt",
                                  "completion_id": cid, "position": position, "generator_model": "m",
                                  "params": {"temperature": 0.7}, "prompt_hash": "p", "rng_seed": 1,
                                  "status": status, "reason": reason})[0]


def make_candidate(store, output="Paris is the capital.",
                   outputs=("Paris is the capital.", "paris is the capital"),
                   instruction="Summarise the paragraph below in one sentence."):
    iid = make_instruction(store, instruction)
    cid = store.add_completion({"stage": "instance", "model_id": "m", "params": {}, "prompt_hash": "q",
                                "text": f"input: x\noutput: {output}", "instruction_id": iid})
    xid, _ = store.add_candidate({"instruction_id": iid, "task_type": "A", "input": "x", "output": output,
                                 "completion_id": cid, "position": 0, "generator_model": "m", "params": {},
                                 "prompt_hash": "q", "status": "ok"})
    store.add_outputs([{"candidate_id": xid, "position": i, "model_id": f"m{i}", "params": {},
                        "prompt_style": "generator" if i == 0 else "chat", "text": t}
                       for i, t in enumerate(outputs)])
    return xid
