# kefu's Python 3.11 processes (gateway, NLU server, action server, knowledge base, pricing, setup):
# one image, the command chooses. Models and the demo shop's files live in the var volume.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng sox libgomp1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY assistant assistant
COPY nlu nlu
COPY channels channels
COPY vision vision
COPY knowledge_base knowledge_base
# the CPU build of torch; never torchvision (ARCHITECTURE.md: it breaks every transformers model)
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e . \
 && ! pip show torchvision >/dev/null 2>&1
ENV KEFU_HOST=0.0.0.0 KEFU_VAR_DIR=/app/var
CMD ["kefu", "gateway"]
