"""The graph layers of AASIST: graph attention, heterogeneous stacking graph attention with a
master node, and graph pooling (Jung et al., ICASSP 2022).

Parameter names follow the official release, so its checkpoints load with
``load_state_dict(strict=True)`` into :class:`fakevoice.models.aasist.Aasist`. Node features are
``(B, N, D)``: ``B`` clips, ``N`` nodes, ``D`` features per node.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GraphAttention", "GraphPool", "HeteroGraphAttention"]


def _node_batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """Batch-normalise node features ``(B, N, D)`` over batch and nodes together."""
    return bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _pairwise_products(x: torch.Tensor) -> torch.Tensor:
    """``(B, N, D) -> (B, N, N, D)``: element-wise products of every pair of nodes."""
    return x[:, :, None, :] * x[:, None, :, :]


class GraphAttention(nn.Module):
    """Graph attention over a fully connected graph (the GAT layer of AASIST).

    Scores are ``s_ij = w . tanh(W (x_i * x_j) + b) / temperature``, ``a_ij = softmax_j(s_ij)``
    and ``x_i' = sum_j a_ij x_j``. Output is
    ``proj_with_att(a @ x) + proj_without_att(x)``, batch-normalised, SELU.

    Input ``(B, N, in_dim)``, output ``(B, N, out_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(0.2)
        self.act = nn.SELU()
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_drop(x)
        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))
        scores = (hidden @ self.att_weight).squeeze(-1) / self.temperature
        attention = torch.softmax(scores, dim=-1)
        out = self.proj_with_att(attention @ x) + self.proj_without_att(x)
        return self.act(_node_batch_norm(self.bn, out))


class HeteroGraphAttention(nn.Module):
    """Heterogeneous stacking graph attention (HS-GAL) over two node types and a stack node.

    The two node sets are projected to a shared space and joined into one graph; pair scores use
    a separate attention vector for type-1/type-1, type-2/type-2 and mixed pairs. The stack
    ("master") node attends to every node and is updated without normalisation or activation.

    Args:
        in_dim: feature size of both inputs and of the stack node.
        out_dim: feature size of the outputs.
        temperature: softmax temperature for node and stack-node attention.

    Shapes:
        ``x1 (B, N1, in_dim)``, ``x2 (B, N2, in_dim)``, ``master (B or 1, 1, in_dim)`` ->
        ``(B, N1, out_dim)``, ``(B, N2, out_dim)``, ``(B, 1, out_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)  # noqa: N815 (official checkpoint name)
        self.att_weight11 = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.att_weight22 = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.att_weight12 = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.att_weightM = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))  # noqa: N815
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)  # noqa: N815
        self.proj_without_attM = nn.Linear(in_dim, out_dim)  # noqa: N815
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(0.2)
        self.act = nn.SELU()
        self.temperature = temperature

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, master: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n1 = x1.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        x = self.input_drop(x)

        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))  # (B, N, N, out)
        vectors = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)
        scores_by_type = hidden @ vectors  # (B, N, N, 3)
        is_type2 = torch.arange(x.shape[1], device=x.device) >= n1
        pair_type = torch.where(
            is_type2[:, None] == is_type2[None, :],
            is_type2[:, None].long().expand(-1, x.shape[1]),
            2,
        )
        index = pair_type[None, :, :, None].expand(x.shape[0], -1, -1, 1)
        scores = scores_by_type.gather(-1, index).squeeze(-1) / self.temperature
        attention = torch.softmax(scores, dim=-1)

        master_hidden = torch.tanh(self.att_projM(x * master))  # (B, N, out)
        master_scores = (master_hidden @ self.att_weightM) / self.temperature  # (B, N, 1)
        master_attention = torch.softmax(master_scores, dim=1)
        new_master = self.proj_with_attM(
            master_attention.transpose(1, 2) @ x
        ) + self.proj_without_attM(master)

        out = self.proj_with_att(attention @ x) + self.proj_without_att(x)
        out = self.act(_node_batch_norm(self.bn, out))
        return out[:, :n1], out[:, n1:], new_master


class GraphPool(nn.Module):
    """Keep the top ``ratio`` share of nodes by a learned sigmoid score, scaled by that score.

    Input ``(B, N, dim)``; output ``(B, max(int(N * ratio), 1), dim)``, nodes in descending
    score order.
    """

    def __init__(self, ratio: float, dim: int, dropout: float = 0.3) -> None:
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(dim, 1)
        self.drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))  # (B, N, 1)
        keep = max(int(h.shape[1] * self.ratio), 1)
        index = torch.topk(scores, keep, dim=1).indices.expand(-1, -1, h.shape[-1])
        return torch.gather(h * scores, 1, index)
