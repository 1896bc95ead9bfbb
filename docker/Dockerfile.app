# kefu's Python 3.11 processes: gateway, NLU server, action server (choose with the command).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY assistant assistant
COPY nlu nlu
COPY channels channels
COPY vision vision
COPY knowledge_base knowledge_base
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e .
ENV KEFU_HOST=0.0.0.0
CMD ["kefu", "gateway"]
